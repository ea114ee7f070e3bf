"""Music that sounds while it is being written: the live audio streams the page plays.

A stream turns music into audio a chunk at a time and sends it over one HTTP response (``LiveHub.route``):

* ``PieceStream``: a finished piece (the first take of Generate), rendered chunk by chunk as fast as it
  goes, so the first sound does not wait for the rest; its recording is the take's audio file;
* ``EndlessLive``: the endless mode, written a bar at a time by ``endless.EndlessStream`` and kept
  ``lead`` seconds ahead of the listener, so a change of key, density, temperature or repetition is
  heard within two bars.

Each chunk goes out as one frame: a 4-byte big-endian length, a JSON header, then MP3 bytes. The header
is ``{"start": s, "end": s, "notes": [[pitch, start, end, velocity], ...], "last": bool, "message": str}``
(seconds from the stream's start), so the page can draw the notes with the sound.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import secrets
import struct
import threading
import time
from dataclasses import dataclass

import anyio
import pretty_midi

from .audio_stream import Mp3Stream, SynthStream, pool_for
from .render import TAIL_SECONDS
from .settings import UserError

log = logging.getLogger("midigen.live")

ROUTE = "/midigen/live/{stream_id}"
FIRST_CHUNK_SECONDS = 0.5  # a piece's first chunk: short, so that it sounds at once
CHUNK_SECONDS = 2.0  # then chunks of this length


def frame(header: dict, audio: bytes) -> bytes:
    """One chunk as sent: length of the JSON header, the header, the MP3 bytes."""
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack(">I", len(text)) + text + audio


def read_frames(data: bytes) -> list[tuple[dict, bytes]]:
    """The (header, MP3 bytes) of every whole frame in ``data`` (for tests and benchmarks)."""
    frames, at = [], 0
    while at + 4 <= len(data):
        (size,) = struct.unpack(">I", data[at : at + 4])
        header = json.loads(data[at + 4 : at + 4 + size])
        start = at + 4 + size
        frames.append((header, data[start : start + header["bytes"]]))
        at = start + header["bytes"]
    return frames


class PieceStream:
    """A finished piece (the first take of Generate) as a stream. It is rendered on a thread of its own, chunk after
    chunk as fast as it goes, from the moment it is made, whether anyone listens yet or not; the listener gets the
    chunks as they come, and the MP3 bytes of them all are the take's audio file (``recording``), so the take is
    rendered once. ``meter`` (``studio.NewMusicMeter``) measures the audio on the way."""

    lead = math.inf  # no pacing: the browser buffers what comes
    kept_after_end = False  # nothing to ask of it once played

    def __init__(self, midi: pretty_midi.PrettyMIDI, soundfont: str | None = None, meter=None):
        self.end = midi.get_end_time() + TAIL_SECONDS
        self.meter = meter
        self.sent = 0.0  # seconds of audio sent
        self._chunks: list[tuple[bytes, bytes, float, bool]] = []  # header frame, MP3 bytes, end, last
        self._taken = 0
        self._done = False
        self._failed = False
        self._ready = threading.Condition()
        synth = SynthStream(pool_for(soundfont))
        synth.schedule_midi(midi)
        threading.Thread(target=self._render, args=(synth,), name="midigen-piece", daemon=True).start()

    def _render(self, synth: SynthStream) -> None:
        mp3, rendered = Mp3Stream(), 0.0
        try:
            while rendered < self.end:
                until = min(rendered + (FIRST_CHUNK_SECONDS if rendered == 0 else CHUNK_SECONDS), self.end)
                first_frame = synth.frame
                samples = synth.render(until)
                if self.meter is not None:
                    self.meter.add(samples, first_frame)
                last = until >= self.end
                audio = mp3.encode(samples) + (mp3.flush() if last else b"")
                header = {"start": round(rendered, 3), "end": round(until, 3), "notes": [], "last": last,
                          "bytes": len(audio)}
                with self._ready:
                    self._chunks.append((frame(header, b""), audio, until, last))
                    self._ready.notify_all()
                rendered = until
        except Exception:
            log.exception("a live piece could not be rendered")
            self._failed = True
        finally:
            synth.close()
            with self._ready:
                self._done = True
                self._ready.notify_all()

    def next_frame(self) -> tuple[bytes, bool]:
        """The next chunk, waiting for it to be rendered; raises ``RuntimeError`` if rendering failed."""
        with self._ready:
            self._ready.wait_for(lambda: self._taken < len(self._chunks) or self._done)
            if self._taken == len(self._chunks):
                raise RuntimeError("the live piece could not be rendered")
            header, audio, until, last = self._chunks[self._taken]
        self._taken += 1
        self.sent = until
        return header + audio, last

    def recording(self) -> tuple[bytes, float | None] | None:
        """Once all is rendered: the whole piece's MP3 bytes and its ``meter``'s level (None without a meter); None
        if rendering failed."""
        with self._ready:
            self._ready.wait_for(lambda: self._done)
        if self._failed:
            return None
        return b"".join(audio for _, audio, _, _ in self._chunks), self.meter.level() if self.meter else None

    def close(self) -> None:
        """Nothing to free: the synthesizer goes back to its pool when the piece is rendered."""


class EndlessLive:
    """An endless stream for one listener: bars written as the listener needs them, until ``max_seconds``."""

    kept_after_end = True  # its Stop asks for the session's MIDI after the sound has stopped

    def __init__(self, endless, program: int, max_seconds: float, kept_seed: bool = False,
                 soundfont: str | None = None):
        self.endless = endless
        self.max_seconds = max_seconds
        self.kept_seed = kept_seed  # the session's MIDI file starts with the seed
        self.synth = SynthStream(pool_for(soundfont))
        self.synth.set_program(0, program)
        self.mp3 = Mp3Stream()
        self.sent = 0.0
        self.lock = threading.Lock()  # steering comes from other threads than writing
        bar = 4 * 60.0 / endless.bpm
        self.lead = max(0.8, min(1.5, bar))  # seconds kept ahead: a change written in the next bar is heard in two

    def steer(self, **changes) -> None:
        with self.lock:
            self.endless.steer(**changes)

    def next_frame(self) -> tuple[bytes, bool]:
        with self.lock:
            notes = []
            while self.endless.frontier <= self.sent + 0.05 and self.endless.frontier < self.max_seconds:
                notes += self.endless.advance()
            until = min(self.endless.frontier, self.max_seconds)
            notes = [n for n in notes if n[1] < until]
        self.synth.schedule_notes(notes)
        last = until >= self.max_seconds
        audio = self.mp3.encode(self.synth.render(until + (TAIL_SECONDS if last else 0.0)))
        if last:
            audio += self.mp3.flush()
        header = {"start": round(self.sent, 3), "end": round(until, 3), "last": last, "bytes": len(audio),
                  "notes": [[p, round(s, 3), round(e, 3), v] for p, s, e, v in notes]}
        if last:
            header["message"] = (f"The endless session reached its limit of {self.max_seconds / 60:.0f} minutes; "
                                 "press Stop to download it.")
        self.sent = until
        return frame(header, audio), last

    def close(self) -> None:
        self.synth.close()


@dataclass
class _Entry:
    stream: PieceStream | EndlessLive
    created: float
    reading: bool = False
    closed: bool = False  # forgotten: its response stops at the next chunk
    finished: float | None = None  # when its response ended


class LiveHub:
    """The open streams, by unguessable id, and the HTTP route that plays them.

    At most ``max_streams`` are open at once; one not read within ``unread_s`` seconds, or ended more than
    ``kept_s`` seconds ago, is forgotten (its synthesizer back in the pool).
    """

    def __init__(self, max_streams: int = 16, unread_s: float = 60.0, kept_s: float = 600.0):
        self.max_streams = max_streams
        self.unread_s = unread_s
        self.kept_s = kept_s
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, env=os.environ) -> LiveHub:
        return cls(int(env.get("MIDIGEN_LIVE_STREAMS", 16)))

    def open(self, stream) -> str:
        """Register ``stream``; its id, for ``url``. Raises ``UserError`` when too many are open."""
        self.sweep()
        with self._lock:
            if self.open_count() >= self.max_streams:
                stream.close()
                raise UserError("Too many people are listening live right now; please try again in a minute.")
            stream_id = secrets.token_urlsafe(16)
            self._entries[stream_id] = _Entry(stream, time.monotonic())
        return stream_id

    def get(self, stream_id: str):
        entry = self._entries.get(stream_id)
        return entry.stream if entry else None

    def close(self, stream_id: str):
        """Forget a stream; the stream, or None if it was gone."""
        with self._lock:
            entry = self._entries.pop(stream_id, None)
        if entry is None:
            return None
        entry.closed = True
        if not entry.reading:
            entry.stream.close()
        return entry.stream

    def open_count(self) -> int:
        """Streams playing or about to: those ended are kept only for ``close`` (an endless session's Stop)."""
        return sum(entry.finished is None for entry in list(self._entries.values()))

    def sweep(self) -> None:
        now = time.monotonic()
        with self._lock:
            stale = [key for key, entry in self._entries.items()
                     if (not entry.reading and entry.finished is None and now - entry.created > self.unread_s)
                     or (entry.finished is not None and now - entry.finished > self.kept_s)]
        for key in stale:
            self.close(key)

    @staticmethod
    def url(stream_id: str) -> str:
        """The stream's address, relative to the page."""
        return ROUTE.format(stream_id=stream_id).lstrip("/")

    def route(self):
        """The Starlette route that sends a stream's frames (404: unknown or expired; 409: already playing)."""
        from starlette.responses import PlainTextResponse, StreamingResponse
        from starlette.routing import Route

        async def play(request):
            stream_id = request.path_params["stream_id"]
            entry = self._entries.get(stream_id)
            if entry is None or entry.finished is not None:
                return PlainTextResponse("This live stream has ended or never existed.", status_code=404)
            if entry.reading:
                return PlainTextResponse("This live stream is already playing.", status_code=409)
            entry.reading = True
            return StreamingResponse(self._frames(stream_id, entry), media_type="application/octet-stream",
                                     headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

        return Route(ROUTE, play)

    async def _frames(self, stream_id: str, entry: _Entry):
        stream = entry.stream
        started = time.monotonic()
        try:
            while not entry.closed:
                data, last = await anyio.to_thread.run_sync(stream.next_frame)
                yield data
                if last:
                    return
                ahead = stream.sent - (time.monotonic() - started) - stream.lead
                if ahead > 0:
                    await asyncio.sleep(ahead)
        finally:
            entry.finished = time.monotonic()
            entry.reading = False
            stream.close()
            if not stream.kept_after_end:
                self.close(stream_id)

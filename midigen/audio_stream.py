"""Audio made a little at a time, for music that sounds while it is being written.

``SynthStream`` keeps one FluidSynth synthesizer for one listener. Notes are scheduled as they
become known and ``render(until)`` synthesizes up to that time, so notes ring on from one chunk
into the next with no seam. The level is fixed (the music to come is not known, so it cannot be
normalized like ``Renderer.render``), with a soft limit on the rare peaks above ``KNEE``.
``Mp3Stream`` encodes the chunks with one LAME encoder, so its MP3 frames join without a gap.

Synthesizers come from a pool (``SynthPool``), one pool per soundfont (``pool_for``): each costs about
12 MB and 40 ms to make (FluidR3; the first of a soundfont loads it, 6 s for MuseScore General's), and
is reset and reused by the next stream.
"""

from __future__ import annotations

import heapq
import math
import threading
from pathlib import Path

import numpy as np
import pretty_midi

from . import soundfonts
from .render import (
    BLOCK_FRAMES,
    CHUNK_FRAMES,
    DRUM_BANK,
    NOTE_OFF,
    NOTE_ON,
    PCM_MAX,
    SAMPLE_RATE,
    RenderUnavailable,
    _channels,
    _events,
    find_soundfont,
    installed_soundfont,
    mp3_encoder,
    new_synth,
    reset_synth,
    write_float,
)

# Gain from the synthesizer's float level (at its gain 0.2) to full scale: generated piano pieces peak between
# 0.04 and 0.12 there through FluidR3, so they stream at about the loudness of the normalized files (-1 dBFS
# peak). Other soundfonts get it divided by their ``loudness``.
STREAM_GAIN = 0.9 / 0.12
KNEE = 0.7  # above this share of full scale, peaks are squeezed smoothly into the rest (soft limit)


class SynthPool:
    """Synthesizers with the soundfont loaded, handed out one per stream and taken back reset; their streams
    play at ``gain`` (``to_pcm``)."""

    def __init__(self, soundfont=None, gain: float = STREAM_GAIN):
        self.soundfont = soundfont
        self.gain = gain
        self._idle: list = []
        self._lock = threading.Lock()

    def acquire(self):
        """A synthesizer and the id of its soundfont; raises ``RenderUnavailable`` without FluidSynth or soundfont."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        path = self.soundfont or find_soundfont()
        if path is None:
            raise RenderUnavailable("no General MIDI soundfont found")
        synth, sfid = new_synth(path)
        synth.system_reset()  # General MIDI defaults on every channel, as a synthesizer given back has them
        return synth, sfid

    def release(self, synth_and_sfid) -> None:
        """Take a synthesizer back: its notes released and rendered away, its controllers reset."""
        reset_synth(synth_and_sfid[0], np.empty((CHUNK_FRAMES, 2), dtype=np.float32))
        with self._lock:
            self._idle.append(synth_and_sfid)


_pools: dict[Path, SynthPool] = {}  # one per soundfont file
_pools_lock = threading.Lock()


def pool_for(soundfont: str | None = None) -> SynthPool:
    """The process-wide pool of the soundfont choice ``soundfont`` (default: the setting's default), its streams
    as loud as the default's; raises ``RenderUnavailable`` when that soundfont is not installed."""
    path = installed_soundfont(soundfont)
    with _pools_lock:
        if path not in _pools:
            _pools[path] = SynthPool(path, STREAM_GAIN / soundfonts.loudness_of(path))
        return _pools[path]


def warm_synths(count: int, soundfont: str | None = None) -> None:
    """Make ``count`` synthesizers of ``soundfont`` now, so that the first streams do not wait for them."""
    pool = pool_for(soundfont)
    made = [pool.acquire() for _ in range(count)]
    for synth in made:
        pool.release(synth)


def to_pcm(chunk: np.ndarray, gain: float = STREAM_GAIN) -> np.ndarray:
    """Float samples from the synthesizer as int16 at the fixed level ``gain``, peaks above ``KNEE`` squeezed."""
    level = chunk * gain
    loud = np.abs(level) > KNEE
    if loud.any():
        over = np.abs(level[loud]) - KNEE
        level[loud] = np.sign(level[loud]) * (KNEE + (1 - KNEE) * np.tanh(over / (1 - KNEE)))
    return np.rint(level * PCM_MAX).astype(np.int16)


class SynthStream:
    """One listener's synthesizer: schedule notes (times in seconds), then ``render`` up to a time. ``pool``:
    where its synthesizer comes from, ``pool_for(soundfont)`` (by default, the default soundfont's)."""

    def __init__(self, pool: SynthPool | None = None):
        self.pool = pool or pool_for()
        self.synth, self.sfid = self.pool.acquire()
        self.frame = 0  # frames rendered so far
        self._events: list[list] = []  # heap of [frame, kind, order, args, live]
        self._order = 0
        self._release: dict[tuple[int, int], list] = {}  # (channel, pitch): the note-off to come
        self._scratch = np.empty((CHUNK_FRAMES, 2), dtype=np.float32)

    def close(self) -> None:
        """Give the synthesizer back to the pool (once)."""
        if self.synth is not None:
            self.pool.release((self.synth, self.sfid))
            self.synth = None

    def set_program(self, channel: int, program: int, is_drum: bool = False) -> None:
        bank = DRUM_BANK if is_drum else 0
        if self.synth.program_select(channel, self.sfid, bank, program) == -1:
            self.synth.program_select(channel, self.sfid, bank, 0)

    def schedule_midi(self, midi: pretty_midi.PrettyMIDI) -> None:
        """Every instrument of ``midi`` on a channel of its own (as ``Renderer.render`` plays it)."""
        channels = _channels(midi.instruments)
        for instrument, channel in zip(midi.instruments, channels, strict=True):
            self.set_program(channel, instrument.program, instrument.is_drum)
        for frame, kind, args in _events(midi.instruments, channels, 2**62):
            self._push(frame, kind, args)

    def schedule_notes(self, notes, channel: int = 0) -> None:
        """``(pitch, start_s, end_s, velocity)`` notes on ``channel``, none starting before what is rendered. A key
        struck again while it sounds releases the note before, as on a piano (``Tokenizer.tokens_to_score``)."""
        for pitch, start, end, velocity in notes:
            key = (channel, int(pitch))
            on = max(round(start * SAMPLE_RATE), self.frame)
            before = self._release.get(key)
            if before is not None and before[4] and before[0] > on:
                before[4] = False
                self._push(on, NOTE_OFF, key)
            self._push(on, NOTE_ON, (*key, int(velocity)))
            self._release[key] = self._push(max(round(end * SAMPLE_RATE), on + 1), NOTE_OFF, key)

    @property
    def pending(self) -> int:
        """Events scheduled and not yet played."""
        return len(self._events)

    def render(self, until: float) -> np.ndarray:
        """int16 stereo frames from what was rendered up to ``until`` seconds (whole 64-frame blocks)."""
        stop = math.ceil(until * SAMPLE_RATE / BLOCK_FRAMES) * BLOCK_FRAMES
        out = np.empty((max(stop - self.frame, 0), 2), dtype=np.int16)
        first = self.frame
        actions = (self.synth.noteoff, self.synth.cc, self.synth.pitch_bend, self.synth.noteon)
        while self._events and self._events[0][0] < stop:
            frame, kind, _, args, live = heapq.heappop(self._events)
            if live:
                self._synthesize(out, first, frame)
                actions[kind](*args)
        self._synthesize(out, first, stop)
        return out

    def _synthesize(self, out: np.ndarray, first: int, stop: int) -> None:
        while self.frame < stop:
            count = min(stop - self.frame, CHUNK_FRAMES)
            chunk = self._scratch[:count]
            write_float(self.synth, chunk, count)
            out[self.frame - first : self.frame - first + count] = to_pcm(chunk, self.pool.gain)
            self.frame += count

    def _push(self, frame: int, kind: int, args: tuple) -> list:
        self._order += 1
        event = [frame, kind, self._order, args, True]
        heapq.heappush(self._events, event)
        return event


class Mp3Stream:
    """One LAME encoder for a whole stream: ``encode`` chunk after chunk, then ``flush`` once."""

    def __init__(self, channels: int = 2):
        self.encoder = mp3_encoder(channels)

    def encode(self, samples: np.ndarray) -> bytes:
        return bytes(self.encoder.encode(np.ascontiguousarray(samples, dtype="<i2").tobytes())) if len(samples) else b""

    def flush(self) -> bytes:
        return bytes(self.encoder.flush())


"""Helpers shared by the tests of the running web app (``tests/app``).

Seed MIDI writers, a raw client for Gradio's HTTP API (for values gradio_client refuses to
send), and the checks every error message and output file must pass.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pretty_midi
import soundfile as sf
from gradio_client import handle_file

from app import OUTPUT_NAMES, SEED_INPUT
from midigen.settings import NAMES, defaults

TAIL_SECONDS = 1.0  # midigen.render.TAIL_SECONDS: audio rings on this long after the last note
AUDIO_SLACK_SECONDS = 1.5
SAMPLE_RATE = 32000  # midigen.render.SAMPLE_RATE
MAX_RANDOM_SEED = 2**31 - 1
MAX_VARIATIONS = 4
MAX_SECONDS = 60.0
SILENCE_RMS = 0.005

# Gradio's busy messages, as written in the installed sources:
# gradio/queueing.py (server, HTTP 503 detail) and gradio_client/client.py (what the client raises).
SERVER_QUEUE_FULL = re.compile(r"^Queue is full\. Max size is (\d+) and size is (\d+)\.$")
CLIENT_QUEUE_FULL = "Queue is full! Please try again."

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Things an end user should never read in an error message.
_CLASS_NAME = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*(?:Error|Exception)\b")
_OPAQUE = ("Traceback", "upstream Gradio app has raised an exception", 'File "', "line ")

SCALE = (60, 62, 64, 65, 67, 69, 71, 72)


# -- calling /generate by name ---------------------------------------------------------------
# Settings the tests send unless they say otherwise: the app's defaults, a fixed random seed, 8 s.
TEST_SETTINGS = {**defaults(), "temperature": 1.0, "seconds": 8, "random_seed": 1234, "randomize": False}


def call_generate(client, seed_file=None, **settings) -> dict:
    """``/generate`` through gradio_client with keyword arguments; the outputs by name (``app.OUTPUT_NAMES``)."""
    unknown = set(settings) - set(NAMES)
    assert not unknown, f"not settings: {unknown}"
    upload = handle_file(str(seed_file)) if seed_file is not None else None
    result = client.predict(**{SEED_INPUT: upload}, **{**TEST_SETTINGS, **settings}, api_name="/generate")
    return dict(zip(OUTPUT_NAMES, result, strict=True))


def api_values(seed_file=None, **settings) -> list:
    """The positional ``data`` list of Gradio's plain HTTP API, in the API's parameter order."""
    values = {**TEST_SETTINGS, **settings}
    return [seed_file, *(values[name] for name in NAMES)]


def named(data: list) -> dict:
    """Outputs of a plain HTTP API result, by name."""
    return dict(zip(OUTPUT_NAMES, data, strict=True))


# -- seed files -------------------------------------------------------------------------------
def write_seed(path: Path, pitches=SCALE, bpm: float = 120.0, beats_per_note: float = 1.0,
               program: int = 0) -> Path:
    """A one-track piano MIDI: ``pitches`` one after another, each ``beats_per_note`` long."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    instrument = pretty_midi.Instrument(program=program)
    seconds = 60.0 / bpm * beats_per_note
    for index, pitch in enumerate(pitches):
        instrument.notes.append(pretty_midi.Note(90, pitch, index * seconds, (index + 1) * seconds))
    midi.instruments.append(instrument)
    midi.write(str(path))
    return path


def write_drums_only(path: Path) -> Path:
    midi = pretty_midi.PrettyMIDI(initial_tempo=120)
    kit = pretty_midi.Instrument(program=0, is_drum=True)
    for index in range(8):
        kit.notes.append(pretty_midi.Note(100, (36, 38, 42)[index % 3], index * 0.25, index * 0.25 + 0.1))
    midi.instruments.append(kit)
    midi.write(str(path))
    return path


def write_years_long(path: Path) -> Path:
    """44 bytes that claim to last about 136 years: 1 tick per beat, 3.75 BPM, a 2**28-tick rest."""
    track = (
        b"\x00\xff\x51\x03" + (16_000_000).to_bytes(3, "big")  # tempo: 16 s per beat
        + b"\x00\x90\x3c\x40" + b"\x01\x80\x3c\x40"  # one note
        + b"\xff\xff\xff\x7f\xff\x2f\x00"  # end of track after 268,435,455 ticks
    )
    path.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, 1) + b"MTrk" + struct.pack(">I", len(track)) + track)
    return path


def write_bad_uploads(folder: Path) -> dict[str, Path]:
    """Every kind of bad seed the app must refuse politely, by name."""
    folder.mkdir(parents=True, exist_ok=True)
    good = write_seed(folder / "good-for-truncation.mid").read_bytes()
    files = {
        "not-midi": folder / "letter.mid",
        "truncated": folder / "truncated.mid",
        "text-file": folder / "notes.txt",
        "drums-only": folder / "drums.mid",
        "years-long": folder / "years.mid",
        "empty": folder / "empty.mid",
    }
    files["not-midi"].write_bytes(b"Dear friend, this is a letter, not a MIDI file.\n" * 3)
    files["truncated"].write_bytes(good[: len(good) // 2])
    files["text-file"].write_bytes(good)  # a real MIDI, but the name says .txt
    write_drums_only(files["drums-only"])
    write_years_long(files["years-long"])
    files["empty"].write_bytes(b"")
    return files


# -- checks -------------------------------------------------------------------------------------
def clear_message_problem(message: object, max_length: int = 200) -> str | None:
    """Why ``message`` is not a short, clear sentence for a user (None when it is)."""
    if not isinstance(message, str) or not message.strip():
        return f"no message at all ({message!r})"
    for marker in _OPAQUE:
        if marker in message:
            return f"contains {marker!r}: {message!r}"
    if match := _CLASS_NAME.search(message):
        return f"names an exception class ({match.group()}): {message!r}"
    if len(message) > max_length:
        return f"too long ({len(message)} characters): {message[:120]!r}..."
    return None


def assert_clear_message(message: object, max_length: int = 200) -> None:
    problem = clear_message_problem(message, max_length)
    assert problem is None, problem


@dataclass
class MidiFacts:
    notes: list[tuple[int, float, float]]  # (pitch, start, end) in seconds, by start then pitch
    end_time: float
    tempo: float
    programs: list[int]


def midi_facts(source: str | os.PathLike | bytes) -> MidiFacts:
    midi = pretty_midi.PrettyMIDI(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    notes = [(n.pitch, n.start, n.end) for i in midi.instruments for n in i.notes]
    notes.sort(key=lambda n: (n[1], n[0], n[2]))
    tempi = midi.get_tempo_changes()[1]
    return MidiFacts(notes, midi.get_end_time(), float(tempi[0]) if len(tempi) else 120.0,
                     [i.program for i in midi.instruments])


@dataclass
class AudioFacts:
    format: str
    sample_rate: int
    channels: int
    seconds: float
    rms: float
    size: int


def audio_facts(path: str | os.PathLike) -> AudioFacts:
    info = sf.info(str(path))
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    rms = float(np.sqrt(np.mean(np.square(samples)))) if samples.size else 0.0
    return AudioFacts(info.format, rate, samples.shape[1], len(samples) / rate, rms, Path(path).stat().st_size)


def check_audio_matches_midi(audio_path, midi_path) -> AudioFacts:
    """The MP3 is 32 kHz stereo, audible, and as long as the MIDI plus the release tail."""
    audio = audio_facts(audio_path)
    midi = midi_facts(midi_path)
    assert audio.format == "MP3", audio
    assert audio.sample_rate == SAMPLE_RATE, audio
    assert audio.channels == 2, audio
    assert audio.rms > SILENCE_RMS, f"audio is (nearly) silent: {audio}"
    expected = midi.end_time + TAIL_SECONDS
    assert abs(audio.seconds - expected) <= AUDIO_SLACK_SECONDS, (audio.seconds, expected)
    return audio


def same_note(a, b, tolerance: float = 2e-3) -> bool:
    return a[0] == b[0] and abs(a[1] - b[1]) <= tolerance and abs(a[2] - b[2]) <= tolerance


def find_note(notes, note, tolerance: float = 2e-3) -> bool:
    return any(same_note(note, other, tolerance) for other in notes)


def dir_size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


def summary_counts(summary: str) -> tuple[int, int]:
    """(new notes, seed notes) from the summary line the app writes."""
    match = re.search(r"(\d+) new notes(?: after (\d+) seed notes)?", summary)
    assert match, summary
    return int(match.group(1)), int(match.group(2) or 0)


# -- raw HTTP API -------------------------------------------------------------------------------
@dataclass
class RawResult:
    """What ``POST /gradio_api/call/generate`` + ``GET .../{event_id}`` gave."""

    kind: str  # "complete", "error" or "http" (the POST was refused)
    data: object
    status: int = 200

    @property
    def message(self):
        if self.kind == "error":
            return self.data.get("error") if isinstance(self.data, dict) else self.data
        if self.kind == "http":
            return self.data
        return None


def raw_generate(url: str, data: list, timeout: float = 90.0, client: httpx.Client | None = None) -> RawResult:
    """Call ``/generate`` through Gradio 6's plain HTTP API (``/gradio_api/call/<api_name>``).

    The body is JSON with NaN and Infinity allowed (as Python writes them), which gradio_client
    refuses to send.
    """
    own = client is None
    client = client or httpx.Client(timeout=timeout)
    try:
        endpoint = url.rstrip("/") + "/gradio_api/call/generate"
        body = json.dumps({"data": data}, allow_nan=True)
        posted = client.post(endpoint, content=body, headers={"content-type": "application/json"}, timeout=timeout)
        if posted.status_code != 200:
            try:
                detail = posted.json().get("detail")
            except ValueError:
                detail = posted.text
            return RawResult("http", detail, posted.status_code)
        event_id = posted.json()["event_id"]
        return read_event(url, event_id, timeout, client)
    finally:
        if own:
            client.close()


def read_event(url: str, event_id: str, timeout: float = 90.0, client: httpx.Client | None = None) -> RawResult:
    """Follow ``GET /gradio_api/call/generate/{event_id}`` (server-sent events) to the end."""
    own = client is None
    client = client or httpx.Client(timeout=timeout)
    try:
        endpoint = f"{url.rstrip('/')}/gradio_api/call/generate/{event_id}"
        event = None
        with client.stream("GET", endpoint, timeout=timeout) as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    payload = line.split(":", 1)[1].strip()
                    return RawResult(event, json.loads(payload) if payload else None)
        raise AssertionError(f"the event stream for {event_id} ended without a result")
    finally:
        if own:
            client.close()


def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

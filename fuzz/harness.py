"""What the fuzz targets share: small valid seed files, and running a target under libFuzzer (atheris) or,
without atheris, under a plain random mutation loop.

The fallback loop understands only -max_total_time=N (default 60), -runs=N and -seed=N. It is much weaker than
libFuzzer: treat it as a smoke test. Crashing inputs are saved as crash-* files in the current directory
(libFuzzer's convention).
"""

import hashlib
import random
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

try:
    import atheris
except ImportError:
    atheris = None

Target = Callable[[bytes], None]


def _vlq(value: int) -> bytes:
    out = [value & 0x7F]
    while value := value >> 7:
        out.append(0x80 | (value & 0x7F))
    return bytes(reversed(out))


def _track(*events: bytes) -> bytes:
    body = b"".join(events) + b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + body


def _notes(pitches, channel: int = 0, step: int = 240) -> bytes:
    return b"".join(
        b"\x00" + bytes([0x90 | channel, p, 100]) + _vlq(step) + bytes([0x80 | channel, p, 0]) for p in pitches
    )


def _smf(fmt: int, division: int, *tracks: bytes) -> bytes:
    return b"MThd" + struct.pack(">IHHH", 6, fmt, len(tracks), division) + b"".join(tracks)


def seeds() -> list[bytes]:
    """Small valid files covering the features the loader checks, and one with data bytes above 127 (a velocity,
    a controller value, a program and a sysex byte), which readers clip to 127."""
    tempo = b"\x00\xff\x51\x03\x07\xa1\x20"
    late_tempo = _vlq(960) + b"\xff\x51\x03\x0f\x42\x40"
    running = b"\x00\x90\x3c\x64\x60\x3c\x00\x00\x3e\x64\x60\x3e\x00"
    out_of_range = b"\x00\xc0\x80\x00\xb0\x40\xff\x00\xf0\x03\x7e\x90\xf7\x00\x90\x3c\x9c\x60\x80\x3c\x00"
    return [
        _smf(0, 480, _track(tempo, _notes([60, 62, 64, 65]))),
        _smf(1, 96, _track(tempo, late_tempo), _track(b"\x00\xc0\x05", _notes([48, 52, 55])), _track(running)),
        _smf(1, 480, _track(b"\x00\xff\x58\x04\x04\x02\x18\x08\x00\xff\x59\x02\x00\x00", _notes([36], channel=9))),
        _smf(0, 240, _track(b"\x00\xf0\x03\x7e\x7f\xf7\x00\xb0\x40\x7f\x00\xe0\x00\x40", _notes([72, 71]))),
        _smf(1, 480, _track(tempo), _track(out_of_range, _notes([62, 64]))),
    ]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """A few random byte-level edits, biased towards MIDI's interesting values."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        where = rng.randrange(len(out) + 1)
        action = rng.choice(("flip", "set", "insert", "delete", "duplicate", "length"))
        if action == "flip" and where < len(out):
            out[where] ^= 1 << rng.randrange(8)
        elif action == "set" and where < len(out):
            out[where] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0x90, 0xF0, 0xF7, 0xFF, rng.randrange(256)))
        elif action == "insert":
            out[where:where] = rng.randbytes(rng.randint(1, 8))
        elif action == "delete":
            del out[where : where + rng.randint(1, 8)]
        elif action == "duplicate":
            out[where:where] = out[rng.randrange(len(out) + 1) :][: rng.randint(1, 64)]
        elif where + 4 <= len(out):
            out[where : where + 4] = struct.pack(">I", rng.choice((0, 1, 6, 0x7FFFFFFF, rng.randrange(1 << 32))))
    return bytes(out)


def check_message(error: Exception) -> None:
    """A rejection must be one short sentence for the user, not a leaked exception."""
    message = str(error)
    if not 0 < len(message) < 200 or "Traceback" in message or "Error" in message:
        raise AssertionError(f"bad user-facing message: {message!r}") from error


def fallback(argv: list[str], target: Target) -> None:
    """Run ``target`` on mutations of the seeds (and of inputs it passed) until the time or runs are spent."""
    flags = dict(arg[1:].split("=", 1) for arg in argv if arg.startswith("-") and "=" in arg)
    budget, runs = float(flags.get("max_total_time", 60)), int(flags.get("runs", -1))
    rng = random.Random(int(flags.get("seed", time.time_ns())))
    corpus, count, stop = seeds(), 0, time.monotonic() + budget
    print(f"atheris is not installed: plain mutation loop for {budget:g} s (much weaker than libFuzzer).")
    while time.monotonic() < stop and count != runs:
        data = mutate(rng.choice(corpus), rng)
        try:
            target(data)
        except Exception:
            path = Path(f"crash-{hashlib.sha1(data).hexdigest()}")
            path.write_bytes(data)
            print(f"crash after {count} runs; input saved to {path}")
            raise
        if rng.random() < 0.01 and len(corpus) < 500:
            corpus.append(data)
        count += 1
    print(f"done: {count} runs, no crash.")


def run(target: Target) -> None:
    """Fuzz ``target`` with the command line's flags: libFuzzer if atheris is installed, else the fallback loop.
    Without a corpus directory libFuzzer starts from the seeds, written to a temporary directory."""
    argv = list(sys.argv)
    if atheris is None:
        fallback(argv[1:], target)
        return
    if not any(not arg.startswith("-") for arg in argv[1:]):
        corpus = Path(tempfile.mkdtemp(prefix="midi-corpus-"))
        for index, data in enumerate(seeds()):
            (corpus / f"seed-{index}.mid").write_bytes(data)
        argv.append(str(corpus))
    atheris.Setup(argv, target)
    atheris.Fuzz()

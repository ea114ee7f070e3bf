"""Fuzz midigen.midi_io.load_midi: anything but a short, clean MidiError (or a slow input) is a crash.

    python fuzz/fuzz_midi_loader.py -max_total_time=60 [corpus_dir ...] [other libFuzzer flags]

With atheris installed this is a coverage-guided libFuzzer run over mido, pretty_midi and midigen; without a
corpus directory it starts from a few small valid files written to a temporary directory. Crashing inputs are
saved as crash-* files in the current directory (libFuzzer's convention).

Without atheris it falls back to a plain random mutation loop over the same seed files, which understands only
-max_total_time=N (default 60), -runs=N and -seed=N. It is much weaker than libFuzzer: treat it as a smoke test.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import harness  # noqa: E402  (fuzz/ is on the path when this file runs as a script)

SLOW_SECONDS = 3.0  # load_midi must answer quickly whatever it is given.


def load_target():
    """Import midigen.midi_io, instrumented for coverage when atheris is available."""
    if harness.atheris is None:
        from midigen import midi_io
    else:
        with harness.atheris.instrument_imports(include=["midigen", "mido", "pretty_midi"]):
            from midigen import midi_io
    return midi_io


midi_io = load_target()


def test_one_input(data: bytes) -> None:
    started = time.perf_counter()
    try:
        midi_io.load_midi(data)
    except midi_io.MidiError as error:
        harness.check_message(error)
    elapsed = time.perf_counter() - started
    if elapsed > SLOW_SECONDS:
        raise AssertionError(f"load_midi took {elapsed:.1f} s on a {len(data)}-byte input")


if __name__ == "__main__":
    harness.run(test_one_input)

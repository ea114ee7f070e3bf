"""Fuzz what midigen writes from an upload: the splice (the seed kept, new music appended), the cut of
Regenerate from here and --keep-seed-until, the splice onto that cut, and Continue (the output read back as a
seed). An upload may be refused with a short, clean MidiError; anything else is a crash, and so is a written file
that strict mido (no clip) or pretty_midi cannot read, or a seed track not kept as the loader read it.

    python fuzz/fuzz_splice.py -max_total_time=60 [corpus_dir ...] [other libFuzzer flags]

With atheris installed this is a coverage-guided libFuzzer run over mido, pretty_midi and midigen; without it,
the plain random mutation loop of fuzz/harness.py (-max_total_time=N, -runs=N, -seed=N): a smoke test.
"""

import io
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import harness  # noqa: E402  (fuzz/ is on the path when this file runs as a script)

SLOW_SECONDS = 5.0  # loading, splicing and cutting a small upload must stay quick whatever it holds.
STEPS_PER_BEAT = 12


def load_targets():
    """Import midigen's loader and splice (and the readers that check the output), instrumented for coverage
    when atheris is available."""
    if harness.atheris is None:
        import mido
        import pretty_midi

        from midigen import midi_io, splice, tokenizer
    else:
        with harness.atheris.instrument_imports(include=["midigen", "mido", "pretty_midi"]):
            import mido
            import pretty_midi

            from midigen import midi_io, splice, tokenizer
    return mido, pretty_midi, midi_io, splice, tokenizer


mido, pretty_midi, midi_io, splice, tokenizer = load_targets()
# New notes as the model writes them: on the seed's last onset, a step later and a beat later.
CONTINUATION = tokenizer.Score([tokenizer.Note(60, 0, 3, 99), tokenizer.Note(108, 1, 6, 40),
                                tokenizer.Note(21, STEPS_PER_BEAT, 24, 127)])


def check_readable(data: bytes, what: str) -> None:
    """``data`` must be a MIDI file that strict mido and pretty_midi read."""
    try:
        mido.MidiFile(file=io.BytesIO(data))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pretty_midi.PrettyMIDI(io.BytesIO(data))
    except Exception as error:
        raise AssertionError(f"{what}: midigen wrote a file standard readers reject ({error})") from error


def check_spliced(seed: "midi_io.CheckedMidi", what: str) -> bytes:
    """Splice the new music onto ``seed``: readable, with the seed's tracks kept byte for byte."""
    _, output = splice.splice(splice.Seed(seed), CONTINUATION, STEPS_PER_BEAT, program=40)
    check_readable(output, what)
    if not output[14:].startswith(seed.data[14:]):
        raise AssertionError(f"{what}: the seed's tracks were not kept as the loader read them")
    return output


def test_one_input(data: bytes) -> None:
    started = time.perf_counter()
    try:
        upload = midi_io.read_midi(data)
    except midi_io.MidiError as error:
        harness.check_message(error)
        return
    output = check_spliced(upload, "splice")
    if midi_io.read_midi(output, splice.UNBOUNDED).clipped:  # Continue reads it back: nothing left to repair
        raise AssertionError("splice: the output still has data bytes above 127")
    try:
        kept = splice.cut(upload, upload.midi.get_end_time() * (1 + len(data) % 8) / 8)
    except midi_io.MidiError as error:
        harness.check_message(error)
    else:
        check_readable(kept.data, "cut")
        check_spliced(kept, "splice onto the cut")
    elapsed = time.perf_counter() - started
    if elapsed > SLOW_SECONDS:
        raise AssertionError(f"load, splice and cut took {elapsed:.1f} s on a {len(data)}-byte input")


if __name__ == "__main__":
    harness.run(test_one_input)

"""Public-domain collections from music21's corpus, written out as folders of MIDI files to train a style on.

``export(style, out)`` parses one collection with music21 (slow: 0.05-0.3 s a piece, on all usable cores)
and writes each piece as a MIDI file, in ``out/train/`` or ``out/validation/``. The split is fixed
(seeded by piece name), and ``train`` keeps files under ``validation/`` for validation, so the JSON of the
weights records it. music21 is needed only here: ``pip install music21==10.5.1``.
"""

from __future__ import annotations

import io
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pretty_midi
from tqdm import tqdm

from .device import usable_cores

VALIDATION_FOLDER = "validation"
MUSIC21_PIN = "music21==10.5.1"
DEFAULT_TEMPO = 100.0  # quarter notes a minute, where a piece has no tempo mark
DEFAULT_VELOCITY = 80  # the corpora mark few dynamics


@dataclass(frozen=True)
class Collection:
    """Where a style's music lives in music21's corpus."""

    source: str  # for the model card
    works: tuple[str, ...]  # music21 corpus folders, or "chorales" for Bach's chorale iterator


COLLECTIONS = {
    "chorale": Collection("J. S. Bach's four-part chorales (music21 corpus: corpus.chorales.Iterator)", ("chorales",)),
    "folk": Collection("O'Neill's Music of Ireland (1850) and Ryan's Mammoth Collection (1883), as ABC "
                       "(music21 corpus: oneills1850, ryansMammoth)", ("oneills1850", "ryansMammoth")),
    "renaissance": Collection("Giovanni Pierluigi da Palestrina's masses and motets, as Humdrum "
                              "(music21 corpus: palestrina)", ("palestrina",)),
}


@dataclass
class ExportReport:
    """What one export wrote."""

    train: int = 0
    validation: int = 0
    failed: int = 0

    def __str__(self) -> str:
        return (f"{self.train} training and {self.validation} validation files written"
                + (f", {self.failed} pieces music21 could not read or write" if self.failed else ""))


def _music21():
    try:
        import music21
    except ImportError as error:
        raise SystemExit(f"the corpus command needs music21: pip install {MUSIC21_PIN}") from error
    return music21


def source_files(style: str) -> list[str]:
    """The corpus files of a style's collection, sorted."""
    corpus = _music21().corpus
    files: list[str] = []
    for work in COLLECTIONS[style].works:
        if work == "chorales":
            files += [str(corpus.getWork(name)) for name in corpus.chorales.Iterator(returnType="filename")]
        else:
            files += [str(path) for path in corpus.getWork(work)]
    return sorted(set(files))


def _pieces_of(path: str) -> list[tuple[str, bytes]]:
    """(name, MIDI bytes) of every score in one corpus file (an ABC file may hold hundreds of tunes)."""
    music21 = _music21()
    stem = Path(path).stem
    try:
        parsed = music21.converter.parse(path)
    except Exception:  # music21 raises many kinds of errors on odd encodings; the piece is skipped
        return []
    scores = list(parsed.scores) if isinstance(parsed, music21.stream.Opus) else [parsed]
    pieces = []
    for number, score in enumerate(scores):
        name = stem if len(scores) == 1 else f"{stem}-{number + 1:04d}"
        try:
            pieces.append((name, _midi_bytes(score)))
        except Exception:  # same: a score music21 cannot take apart is skipped
            pieces.append((name, b""))
    return pieces


def _midi_bytes(score) -> bytes:
    """A score's notes as a one-track piano MIDI file, at its first tempo mark (music21's own MIDI writer
    fails on many ABC tunes)."""
    flat = score.stripTies().flatten()
    marks = flat.getElementsByClass("MetronomeMark")
    tempo = float(marks[0].getQuarterBPM()) if marks and marks[0].getQuarterBPM() else DEFAULT_TEMPO
    meters = flat.getElementsByClass("TimeSignature")
    midi = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    if meters:
        midi.time_signature_changes.append(pretty_midi.TimeSignature(meters[0].numerator, meters[0].denominator, 0.0))
    piano = pretty_midi.Instrument(program=0)
    seconds = 60.0 / tempo
    for element in flat.notes:
        start, length = float(element.offset), float(element.quarterLength)
        if length <= 0:  # grace notes
            continue
        velocity = element.volume.velocity or DEFAULT_VELOCITY
        for pitch in element.pitches:
            piano.notes.append(pretty_midi.Note(velocity=int(velocity), pitch=int(pitch.midi),
                                                start=start * seconds, end=(start + length) * seconds))
    if not piano.notes:
        return b""
    midi.instruments.append(piano)
    buffer = io.BytesIO()
    midi.write(buffer)
    return buffer.getvalue()


def is_validation(name: str, share: float) -> bool:
    """The fixed split: a piece is held out by a hash of its name, whatever else the collection holds."""
    return random.Random(name).random() < share


def export(style: str, out: str | Path, limit: int | None = None, validation_share: float = 0.1,
           workers: int | None = None, progress: bool = True) -> ExportReport:
    """Write the collection of ``style`` to ``out/train/*.mid`` and ``out/validation/*.mid``.

    ``limit`` keeps that many corpus files (a seeded sample), for a quicker export and training.
    """
    if style not in COLLECTIONS:
        raise ValueError(f"no collection for style {style!r}: choose one of {', '.join(COLLECTIONS)}")
    files = source_files(style)
    if limit is not None and limit < len(files):
        files = sorted(random.Random(0).sample(files, limit))
    out = Path(out)
    for folder in ("train", VALIDATION_FOLDER):
        (out / folder).mkdir(parents=True, exist_ok=True)
    report = ExportReport()
    with ProcessPoolExecutor(workers or usable_cores()) as pool:
        results = pool.map(_pieces_of, files, chunksize=4)
        for pieces in tqdm(results, total=len(files), desc=f"export {style}", unit="file", disable=not progress):
            report.failed += not pieces
            for name, data in pieces:
                if not data:
                    report.failed += 1
                    continue
                held_out = is_validation(name, validation_share)
                (out / (VALIDATION_FOLDER if held_out else "train") / f"{name}.mid").write_bytes(data)
                report.validation += held_out
                report.train += not held_out
    return report

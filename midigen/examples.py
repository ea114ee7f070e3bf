"""Example seeds built in code from public-domain melodies (no files shipped)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from .tokenizer import Note, Score, Tokenizer

# (name, bpm, melody as (MIDI pitch or None for a rest, length in beats), left-hand chords per bar)
MELODIES = {
    "Ode to Joy (Beethoven)": (
        108,
        [(64, 1), (64, 1), (65, 1), (67, 1), (67, 1), (65, 1), (64, 1), (62, 1),
         (60, 1), (60, 1), (62, 1), (64, 1), (64, 1.5), (62, 0.5), (62, 2)],
        [(48, 52, 55), (43, 47, 50), (48, 52, 55), (43, 47, 50)],
    ),
    "Twinkle, Twinkle, Little Star": (
        100,
        [(60, 1), (60, 1), (67, 1), (67, 1), (69, 1), (69, 1), (67, 2),
         (65, 1), (65, 1), (64, 1), (64, 1), (62, 1), (62, 1), (60, 2)],
        [(48, 52, 55), (41, 45, 48), (43, 47, 50), (48, 52, 55)],
    ),
    "Frère Jacques": (
        120,
        [(60, 1), (62, 1), (64, 1), (60, 1), (60, 1), (62, 1), (64, 1), (60, 1),
         (64, 1), (65, 1), (67, 2), (64, 1), (65, 1), (67, 2)],
        [(48, 55), (48, 55), (48, 55), (48, 55)],
    ),
    "Greensleeves (waltz)": (
        132,
        [(57, 1), (60, 2), (62, 1), (64, 1.5), (65, 0.5), (64, 1), (62, 2), (59, 1),
         (55, 1.5), (57, 0.5), (59, 1), (60, 2), (57, 1), (57, 1.5), (56, 0.5), (57, 1), (59, 3)],
        [(45, 52, 57), (43, 50, 55), (45, 52, 57), (40, 47, 52), (45, 52, 57), (43, 50, 55)],
    ),
}


def example_score(name: str, steps_per_beat: int = 12) -> Score:
    """The melody over block chords, one chord per bar (bar = 4 beats, or 3 for a waltz)."""
    bpm, melody, chords = MELODIES[name]
    beats_per_bar = 3 if "waltz" in name else 4
    notes, position = [], 0
    for pitch, beats in melody:
        length = round(beats * steps_per_beat)
        if pitch is not None:
            notes.append(Note(pitch + 12, position, length, 92))
        position += length
    bar = beats_per_bar * steps_per_beat
    for index in range(-(-position // bar)):
        for pitch in chords[index % len(chords)]:
            notes.append(Note(pitch, index * bar, bar, 64))
    return Score(sorted(notes, key=lambda n: (n.start, n.pitch)), float(bpm))


def write_examples(folder: Path, tokenizer: Tokenizer | None = None) -> list[Path]:
    """Write every example seed as a .mid file in ``folder``; returns their paths."""
    tokenizer = tokenizer or Tokenizer()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in MELODIES:
        ascii_name = unicodedata.normalize("NFKD", name.split(" (")[0]).encode("ascii", "ignore").decode()
        slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
        path = folder / f"{slug}.mid"
        tokenizer.score_to_midi(example_score(name, tokenizer.config.steps_per_beat)).write(str(path))
        paths.append(path)
    return paths

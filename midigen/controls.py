"""Control vectors: the key, register, density and loudness the model is asked to keep.

The model reads one vector at every step (``MidiGRU``, ``control_size``). In training it describes
the passage being predicted; when sampling it comes from the seed, or from the user's choice of key
and density. Each part has a flag saying whether it is known; an unknown part is all zeros, so the
zero vector asks for nothing and the model makes its own choice::

    [ pitch-class profile x 12, key known | register, known | density, known | loudness, known ]
"""

from __future__ import annotations

import functools
import math
import re
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from .stats import MAJOR_PROFILE, MINOR_PROFILE, duration_profile, notes_per_beat
from .tokenizer import Score, Tokenizer

CONTROL_SIZE = 19
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
KEY_NAMES = tuple(f"{n} major" for n in NOTE_NAMES) + tuple(f"{n} minor" for n in NOTE_NAMES)
TONICS = {"c": 0, "b#": 0, "c#": 1, "db": 1, "d": 2, "d#": 3, "eb": 3, "e": 4, "fb": 4, "f": 5, "e#": 5,
          "f#": 6, "gb": 6, "g": 7, "g#": 8, "ab": 8, "a": 9, "a#": 10, "bb": 10, "b": 11, "cb": 11}
DENSITY_LEVELS = ("sparse", "light", "medium", "busy", "dense")
DENSITY_PERCENTILES = (10, 30, 50, 70, 90)  # of the training passages' notes per beat, one per level
MAX_PIECES = 1024  # training pieces whose character a checkpoint keeps (``ControlLevels.pieces``)
TRANSPOSE = 5  # most semitones a character is moved up or down, so that pieces from scratch come in every key


def key_index(name: str) -> int:
    """0-11 for C..B major, 12-23 for C..B minor, from names such as 'D minor', 'Eb major', 'f# minor'."""
    match = re.fullmatch(r"\s*([a-g][#b]?)\s*(major|minor)\s*", str(name).lower())
    if not match or match.group(1) not in TONICS:
        raise ValueError(f"key must be auto, free or a key such as 'D minor' or 'Eb major', not {name!r}")
    return TONICS[match.group(1)] + (12 if match.group(2) == "minor" else 0)


@dataclass(frozen=True)
class Controls:
    """What to keep; None leaves a part to the model. ``profile``: 12 pitch-class shares summing to 1."""

    profile: tuple[float, ...] | None = None
    mean_pitch: float | None = None
    notes_per_beat: float | None = None
    mean_velocity: float | None = None
    key_strength: float = 1.0  # above 1 the profile is stressed beyond anything seen in training

    def vector(self) -> np.ndarray:
        """The model's input (``CONTROL_SIZE`` float32 values)."""
        v = np.zeros(CONTROL_SIZE, dtype=np.float32)
        if self.profile is not None:
            v[:12] = 12.0 * self.key_strength * np.asarray(self.profile, dtype=np.float32)
            v[12] = 1.0
        if self.mean_pitch is not None:
            v[13:15] = (self.mean_pitch - 60.0) / 12.0, 1.0
        if self.notes_per_beat is not None:
            v[15:17] = math.log2(max(self.notes_per_beat, 1e-3)) - 1.5, 1.0
        if self.mean_velocity is not None:
            v[17:19] = (self.mean_velocity - 80.0) / 32.0, 1.0
        return v

    def replace(self, **changes) -> Controls:
        return replace(self, **changes)

    @classmethod
    def of_notes(cls, pitches, durations, starts, velocities, steps_per_beat: int) -> Controls:
        """All four parts measured on a passage (nothing known for an empty one)."""
        if len(pitches) == 0:
            return cls()
        return cls(tuple(duration_profile(pitches, durations).tolist()), float(np.mean(pitches)),
                   notes_per_beat(starts, steps_per_beat), float(np.mean(velocities)))

    @classmethod
    def of_score(cls, score: Score, steps_per_beat: int) -> Controls:
        notes = score.notes
        return cls.of_notes([n.pitch for n in notes], [n.duration for n in notes], [n.start for n in notes],
                            [n.velocity for n in notes], steps_per_beat)


@dataclass(frozen=True)
class ControlLevels:
    """What named choices mean for a model, and what it writes from scratch: a typical profile of a major and a
    minor key on C, the notes per beat of each density level, the character of training pieces (``pieces``:
    each one's 12 pitch-class shares, mean pitch and mean velocity; the model reads velocities as their level's
    middle), and the mean velocity the pieces play each velocity level at (``loudness``; 0: never). Measured on the
    training data and kept in the checkpoint."""

    major: tuple[float, ...] = tuple(MAJOR_PROFILE / MAJOR_PROFILE.sum())
    minor: tuple[float, ...] = tuple(MINOR_PROFILE / MINOR_PROFILE.sum())
    density: tuple[float, ...] = (1.5, 2.3, 3.2, 4.2, 6.0)
    pieces: tuple[tuple[float, ...], ...] = ()
    loudness: tuple[int, ...] = ()

    def key_profile(self, name: str) -> tuple[float, ...]:
        index = key_index(name)
        profile = self.minor if index >= 12 else self.major
        return tuple(float(x) for x in np.roll(profile, index % 12))

    def typical_profile(self, key: int) -> tuple[float, ...]:
        """How the training pieces in ``key``'s mode sound on average (each piece's profile moved to the key's
        tonic): broader than ``key_profile``, which is of the clearest passages. That one without ``pieces``."""
        profile = np.asarray(_typical_on_c(self, key >= 12))
        return tuple(float(x) for x in np.roll(profile / profile.sum(), key % 12))

    def notes_per_beat(self, level: str) -> float:
        if level not in DENSITY_LEVELS:
            raise ValueError(f"density must be auto or one of {', '.join(DENSITY_LEVELS)}, not {level!r}")
        return self.density[DENSITY_LEVELS.index(level)]

    def character(self, rng: np.random.Generator) -> Controls:
        """The key profile, register and loudness of a random training piece, transposed by up to ``TRANSPOSE``
        semitones: what a piece from scratch keeps (its density is left to the model). Nothing is known without
        ``pieces`` (weights trained before they were kept)."""
        if not self.pieces:
            return Controls()
        *profile, mean_pitch, mean_velocity = self.pieces[rng.integers(len(self.pieces))]
        shift = int(rng.integers(-TRANSPOSE, TRANSPOSE + 1))
        return Controls(tuple(np.roll(profile, shift).tolist()), mean_pitch + shift, None, mean_velocity)

    def to_dict(self) -> dict:
        return {"major": list(self.major), "minor": list(self.minor), "density": list(self.density),
                "pieces": [list(piece) for piece in self.pieces], "loudness": list(self.loudness)}

    @classmethod
    def from_dict(cls, data: dict | None) -> ControlLevels:
        if not data:
            return cls()
        return cls(**{k: tuple(map(tuple, v)) if k == "pieces" else tuple(v) for k, v in data.items()})

    @classmethod
    def measure(cls, passages: Iterable[Controls], pieces: Iterable[Controls] = (),
                loudness: Iterable[list[list[int]]] = (), clearest: float = 0.1) -> ControlLevels:
        """Levels from training passages: for each mode, the mean profile of the ``clearest`` share of its
        passages (those whose estimated key stands out most from the next best), rotated to C; and the
        density percentiles. Clear passages make a key asked for unmistakable. The passages are read once,
        keeping 14 numbers of each. ``pieces`` (whole training pieces) give the characters, at most
        ``MAX_PIECES`` of them, spread evenly; ``loudness`` (each piece's [sum of velocities, notes] per velocity
        level, as ``prepare`` records them) the velocity each level plays at."""
        from .stats import key_correlations

        minor, margins, profiles, density = array("b"), array("d"), array("d"), array("d")
        for passage in passages:
            correlations = key_correlations(np.asarray(passage.profile))
            key = int(np.argmax(correlations))
            minor.append(key >= 12)
            margins.append(correlations[key] - np.partition(correlations, -2)[-2])
            profiles.extend(np.roll(passage.profile, -(key % 12)))
            density.append(passage.notes_per_beat)
        is_minor, margins, profiles = np.asarray(minor, dtype=bool), np.asarray(margins), np.reshape(profiles, (-1, 12))
        levels = {}
        for mode, rows in (("major", np.flatnonzero(~is_minor)), ("minor", np.flatnonzero(is_minor))):
            kept = rows[np.argsort(-margins[rows], kind="stable")][: max(1, round(len(rows) * clearest))]
            levels[mode] = tuple(np.mean(profiles[kept], axis=0).tolist()) if len(kept) else getattr(cls(), mode)
        characters = [tuple(round(x, 4) for x in (*p.profile, p.mean_pitch, p.mean_velocity))
                      for p in pieces if p.profile is not None]
        characters = characters[:: -(-len(characters) // MAX_PIECES) or 1]
        return cls(levels["major"], levels["minor"], tuple(np.percentile(density, DENSITY_PERCENTILES).tolist()),
                   tuple(characters), mean_loudness(loudness))


def mean_loudness(loudness: Iterable[list[list[int]]]) -> tuple[int, ...]:
    """The mean velocity of each velocity level (0: no notes) over pieces' [sum of velocities, notes] per level,
    as ``prepare`` records them (a piece recorded before that: ``[]``)."""
    counted = [np.asarray(piece, dtype=np.int64) for piece in loudness if piece]
    sums = np.sum(counted, axis=0) if counted else ()
    return tuple(round(total / notes) if notes else 0 for total, notes in sums)


@functools.lru_cache(maxsize=8)
def _typical_on_c(levels: ControlLevels, minor: bool) -> tuple[float, ...]:
    """``ControlLevels.typical_profile`` on C, computed once per model and mode (it weighs every training piece:
    about 0.1 s on a busy 2-core machine, which each answer in the Duet tab would otherwise pay twice)."""
    from .stats import estimate_key

    rows = [np.roll(p[:12], -(estimate_key(np.asarray(p[:12])) % 12)) for p in levels.pieces
            if (estimate_key(np.asarray(p[:12])) >= 12) == minor]
    return tuple(np.mean(rows, axis=0)) if rows else (levels.minor if minor else levels.major)


@dataclass
class TokenNotes:
    """The notes of a token sequence as arrays, each with the index of its PITCH token."""

    index: np.ndarray
    pitch: np.ndarray
    duration: np.ndarray
    start: np.ndarray
    velocity: np.ndarray

    @classmethod
    def of(cls, tokens: np.ndarray, tokenizer: Tokenizer, level_before: int | None = None,
           sounding: dict[int, int] | None = None) -> TokenNotes:
        """Read notes straight from tokens (as the decoder would, without merging repeated keys). ``level_before``
        is the velocity level in force before the first token, for tokens cut from a piece (default: velocity 80);
        ``sounding`` the velocity some levels play at (``Tokenizer.level_velocities``; others: their middle)."""
        ranges = tokenizer.vocab.kind_ranges()
        c = tokenizer.config
        tokens = np.asarray(tokens)
        shifts = np.where((tokens >= ranges["SHIFT"].start) & (tokens < ranges["SHIFT"].stop),
                          tokens - ranges["SHIFT"].start + 1, 0)
        onset = np.cumsum(shifts)
        is_velocity = (tokens >= ranges["VELOCITY"].start) & (tokens < ranges["VELOCITY"].stop)
        level = np.where(is_velocity, tokens - ranges["VELOCITY"].start, -1)
        last = np.maximum.accumulate(np.where(is_velocity, np.arange(len(tokens)), -1))
        level = np.where(last >= 0, level[np.maximum(last, 0)],
                         tokenizer.velocity_level(80) if level_before is None else level_before)
        index = np.flatnonzero((tokens >= ranges["PITCH"].start) & (tokens < ranges["PITCH"].stop))
        following = tokens[np.minimum(index + 1, len(tokens) - 1)]
        is_duration = (following >= ranges["DURATION"].start) & (following < ranges["DURATION"].stop)
        duration = np.where(is_duration, following - ranges["DURATION"].start + 1, c.steps_per_beat)
        sounding = sounding or {}
        velocities = np.array([sounding.get(v, tokenizer.level_velocity(v)) for v in range(c.velocity_levels)])
        return cls(index, tokens[index] - ranges["PITCH"].start + c.pitch_min, duration, onset[index],
                   velocities[level[index]])

    def controls(self, first: int, stop: int, steps_per_beat: int) -> Controls:
        """Controls of the notes whose PITCH token lies in ``first <= index < stop``."""
        lo, hi = np.searchsorted(self.index, [first, stop])
        return Controls.of_notes(self.pitch[lo:hi], self.duration[lo:hi], self.start[lo:hi],
                                 self.velocity[lo:hi], steps_per_beat)

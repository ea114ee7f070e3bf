"""What a sampled continuation must obey, shared by both samplers (NumPy only, no compiler).

* Grammar: ``may_follow[previous, next]`` says which token may come after which, so every output
  is a well-formed token stream.
* Chord order: chord notes are written from low to high, so after PITCH p no lower or equal pitch
  may follow until the next SHIFT (``chord_top`` finds the prompt's last chord top), nor a
  VELOCITY when no higher pitch is left for it.
* Stopping (``SamplingSettings``): a row ends after ``max_notes`` new notes (once the last one has
  its duration), before the SHIFT that would take it to ``max_steps`` grid steps (only after its
  first note), or after ``max_tokens`` tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .tokenizer import BOS, EOS, Tokenizer


@dataclass(frozen=True)
class SamplingSettings:
    """What to sample: all checked on construction."""

    temperature: float = 1.0
    top_p: float = 0.95
    max_notes: int = 200
    max_steps: int = 2**31 - 1
    max_tokens: int = 4096

    def __post_init__(self):
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)):
            raise ValueError("temperature must be a finite number")
        if self.temperature <= 0:
            raise ValueError("temperature must be greater than 0")
        if not (isinstance(self.top_p, (int, float)) and math.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise ValueError("top_p must be in (0, 1]")
        if self.max_notes < 1 or self.max_steps < 1 or self.max_tokens < 1:
            raise ValueError("max_notes, max_steps and max_tokens must be positive")


def grammar(tokenizer: Tokenizer, allow_eos: bool = False) -> np.ndarray:
    """``may_follow[previous, next]``: which token may come after which.

    BOS -> TEMPO -> (SHIFT | VELOCITY | PITCH)...; VELOCITY -> PITCH;
    PITCH -> DURATION; DURATION -> SHIFT | VELOCITY | PITCH (| EOS).
    """
    ranges = tokenizer.vocab.kind_ranges()
    size = len(tokenizer.vocab)
    may_follow = np.zeros((size, size), dtype=np.bool_)
    onset = [ranges["SHIFT"], ranges["VELOCITY"], ranges["PITCH"]]

    def allow(previous: range | list, following: list[range | list]):
        for kind in following:
            may_follow[np.ix_(list(previous), list(kind))] = True

    allow([BOS], [ranges["TEMPO"]])
    allow(ranges["TEMPO"], onset)
    allow(ranges["SHIFT"], onset)
    allow(ranges["VELOCITY"], [ranges["PITCH"]])
    allow(ranges["PITCH"], [ranges["DURATION"]])
    allow(ranges["DURATION"], onset + ([[EOS]] if allow_eos else []))
    return may_follow


def grammar_violations(tokens, may_follow: np.ndarray) -> int:
    """Number of adjacent pairs the grammar does not allow."""
    tokens = np.asarray(tokens)
    return int((~may_follow[tokens[:-1], tokens[1:]]).sum()) if len(tokens) > 1 else 0


def chord_top(prompt: list[int], ranges: dict[str, range]) -> int:
    """Highest PITCH token of the prompt's last chord (-1 if it ended on a shift or has none)."""
    for token in reversed(prompt):
        if token in ranges["PITCH"]:
            return token
        if token in ranges["SHIFT"] or token in ranges["TEMPO"]:
            return -1
    return -1


class Rules(NamedTuple):
    """The grammar and the token ranges the chord and stopping rules look at, as one array and plain
    ints (``lo <= token < hi``), so the compiled loop can take them as one argument."""

    may_follow: np.ndarray
    pitch_lo: int
    pitch_hi: int
    shift_lo: int
    shift_hi: int
    velocity_lo: int
    velocity_hi: int

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> Rules:
        ranges = tokenizer.vocab.kind_ranges()
        pitch, shift, velocity = ranges["PITCH"], ranges["SHIFT"], ranges["VELOCITY"]
        return cls(grammar(tokenizer), pitch.start, pitch.stop, shift.start, shift.stop, velocity.start, velocity.stop)

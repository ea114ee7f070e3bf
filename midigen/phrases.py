"""Writing new music a bar at a time, so that it keeps its character and comes back to its own ideas.

The sampler writes up to the next bar line per call, the GRU state carried from call to call
(``Sampler.sample_states``). Between bars the writer

* **steers**: the register, density and loudness asked of the model for the next bar are corrected
  by how far the new music so far is from its target (the seed's, or the user's choice), the way a
  thermostat corrects the heating. Left alone the model drifts: about 2 semitones low, and its
  density wanders further from the seed's than a real continuation does;
* **holds the key** (the seed's estimated key or one the user names): each pitch is weighted by the
  Krumhansl-Kessler profile of that key (a logit bias that leaves the total weight of notes unchanged,
  ``key_bias``);
* **holds the loudness** (a seed's): each loudness level is weighed down by its distance from the
  seed's (``loudness_bias``), so the new music changes level about as seldom as the seed does;
* **recalls**: at the start of every two-bar phrase from the third on, with probability ``recall``
  (the Repetition setting), an earlier phrase of the new music is played again (never two recalls in
  a row) and the model goes on from it. Real pieces repeat their motifs and sections; without this
  nothing ever comes back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .controls import Controls, TokenNotes
from .rules import SamplingSettings
from .sample import Sampler
from .settings import setting
from .stats import MAJOR_PROFILE, MINOR_PROFILE

BAR_BEATS = 4
PHRASE_BARS = 2
KEY_BIAS = 0.75  # logit weight of log(key profile) on pitch tokens (``key_bias``)
LOUDNESS_HOLD = 1.0  # logit taken from a VELOCITY token per level it lies from the one held (``loudness_bias``)
REGISTER_OFFSET = 2.0  # semitones asked above the target: the model writes lower than it is asked
GAIN = 0.5  # share of the remaining error corrected after each bar
MIN_NOTES = 8  # new notes written before steering starts
MIN_PHRASE_NOTES = 4  # fewer: not worth recalling
LIMITS = {"pitch": 12.0, "log_density": 1.5, "velocity": 32.0}  # most each correction may add
BAR_TOKENS = 2048  # most tokens one call may write (a bar rarely needs 100)
CONTEXT = 512  # tokens handed to a call that starts from a state: enough for any last chord


def key_bias(key: int, tokenizer, weight: float = KEY_BIAS) -> np.ndarray:
    """Logit bias over the vocabulary holding ``key`` (0-11 major, 12-23 minor): ``weight * log(profile)`` on each
    PITCH token's pitch class, with the key's Krumhansl-Kessler profile (broad: every scale degree counts, so
    the music keeps moving through the scale rather than dwelling on the tonic), shifted so that music already
    following the profile keeps the same total weight of notes."""
    profile = np.roll(MINOR_PROFILE if key >= 12 else MAJOR_PROFILE, key % 12)
    profile = profile / profile.sum()
    by_class = weight * np.log(profile / profile.max())
    by_class -= np.log((profile * np.exp(by_class)).sum())
    pitches = tokenizer.vocab.kind_ranges()["PITCH"]
    classes = (np.arange(len(pitches)) + tokenizer.config.pitch_min) % 12
    bias = np.zeros(len(tokenizer.vocab), dtype=np.float32)
    bias[pitches.start : pitches.stop] = by_class[classes]
    return bias


def loudness_bias(level: int, tokenizer, weight: float = LOUDNESS_HOLD) -> np.ndarray:
    """Logit bias over the vocabulary holding loudness level ``level``: ``-weight`` per level on each VELOCITY
    token (a level is only written when it changes, so every change costs, and a far one more)."""
    bias = np.zeros(len(tokenizer.vocab), dtype=np.float32)
    velocity = tokenizer.vocab.kind_ranges()["VELOCITY"]
    bias[velocity.start : velocity.stop] = -weight * np.abs(np.arange(len(velocity)) - level)
    return bias


@dataclass
class Steering:
    """Corrections added to the target's register, density (log2 notes per beat) and loudness."""

    pitch: float = REGISTER_OFFSET
    log_density: float = 0.0
    velocity: float = 0.0

    def asked(self, target: Controls) -> Controls:
        """The controls to give the model for the next bar."""
        return target.replace(
            mean_pitch=None if target.mean_pitch is None else target.mean_pitch + self.pitch,
            notes_per_beat=None if target.notes_per_beat is None
            else target.notes_per_beat * 2.0 ** self.log_density,
            mean_velocity=None if target.mean_velocity is None else target.mean_velocity + self.velocity,
        )

    def correct(self, target: Controls, made: Controls) -> None:
        """Move each correction by ``GAIN`` times the error of the music made so far."""
        errors = {
            "pitch": None if target.mean_pitch is None else target.mean_pitch - made.mean_pitch,
            "log_density": None if target.notes_per_beat is None
            else math.log2(target.notes_per_beat / max(made.notes_per_beat, 1e-3)),
            "velocity": None if target.mean_velocity is None else target.mean_velocity - made.mean_velocity,
        }
        for name, error in errors.items():
            if error is not None:
                limit = LIMITS[name]
                setattr(self, name, float(np.clip(getattr(self, name) + GAIN * error, -limit, limit)))


@dataclass(frozen=True)
class Phrase:
    """Two bars of new music as written: their first bar line (grid step), their onsets, and the VELOCITY
    token in effect before the first onset (None: none yet)."""

    start: int
    events: tuple[tuple[int, tuple[int, ...]], ...]  # (onset step, the tokens written at it)
    velocity: int | None


@dataclass(frozen=True)
class Played:
    """A phrase made to start at another bar line: its tokens, notes and last onset (grid step)."""

    tokens: list[int]
    notes: int
    last_onset: int


class PhraseWriter:
    """Writes one continuation bar by bar (module docstring). ``target``: the character to keep (None: a
    model without controls, which is neither steered nor given a key); ``recall``: the chance that a phrase is
    an earlier one played again; ``key``: the key held by ``key_bias`` (0-11 major, 12-23 minor; None: none);
    ``loudness``: the velocity level held by ``loudness_bias`` (None: none); ``sounding``: the velocity each level
    will play at (``Tokenizer.level_velocities`` of the seed), which the loudness is steered on.
    """

    def __init__(self, sampler: Sampler, target: Controls | None, recall: float = setting("repetition").default,
                 key: int | None = None, loudness: int | None = None, sounding: dict[int, int] | None = None):
        self.sampler = sampler
        self.recall = recall
        self.tokenizer = sampler.tokenizer
        self.ranges = self.tokenizer.vocab.kind_ranges()
        self.bar = BAR_BEATS * self.tokenizer.config.steps_per_beat
        self.target = target
        self.sounding = sounding
        biases = ([] if key is None else [key_bias(key, self.tokenizer)]) + (
            [] if loudness is None else [loudness_bias(loudness, self.tokenizer)])
        self.bias = sum(biases) if biases else None

    def write(self, prompt: list[int], settings: SamplingSettings, random_seed: int, position: int) -> list[int]:
        """New tokens after ``prompt``, whose last onset is at grid step ``position``, within ``settings``' limits
        (notes, steps and tokens, as ``Sampler.sample``)."""
        rng = np.random.Generator(np.random.PCG64(random_seed))
        steering = Steering()
        tokens, first, start, state, notes = list(prompt), len(prompt), position, None, 0
        stop_at = (position // self.bar + 1) * self.bar  # where the next call stops: the next bar line
        reached = None  # the bar line the new music has just come to, if it has
        recalled: set[int] = set()  # bar lines where a recall starts (never recalled themselves)
        velocity = self._velocity(tokens)
        level = None if velocity is None else velocity - self.ranges["VELOCITY"].start
        for call in range(settings.max_tokens):
            made = len(tokens) - first
            if notes >= settings.max_notes or made >= settings.max_tokens or position >= settings.max_steps:
                break
            control = None if self.target is None else steering.asked(self.target).vector()
            played = None if reached is None else self._recall(tokens, first, start, position, reached, recalled, rng)
            if played is not None and self._fits(played, notes, made, settings):
                added = played.tokens
                state = self.sampler.advance(state, added, control)
                recalled.add(reached)
                position = played.last_onset
                # the next call writes the rest of the phrase's last bar, and one more bar
                reached, stop_at = None, reached + (PHRASE_BARS + 1) * self.bar
            else:
                bar = replace(settings, max_notes=settings.max_notes - notes,
                              max_steps=min(settings.max_steps, stop_at),
                              max_tokens=min(settings.max_tokens - made, BAR_TOKENS))
                context = tokens if state is None else tokens[-CONTEXT:]  # with a state, only the last chord is read
                rows, states = self.sampler.sample_states(context, bar, 1, random_seed * 100_003 + call, position,
                                                          control, self.bias, state)
                added, state = rows[0], states[0]
                if not added:
                    break
                position += self._steps(added)
                if position >= settings.max_steps and notes:  # its first onset went past the end: the piece ends
                    tokens += self._before(added, position - self._steps(added), settings.max_steps)
                    break
                # stopped at the bar line, or went past it (a bar left empty): then on to the next line
                reached, stop_at = ((stop_at, stop_at + self.bar) if position < stop_at
                                    else (None, (position // self.bar + 1) * self.bar))
            tokens += added
            notes += self._count(added)
            if self.target is not None:
                self._steer(steering, tokens[first:], level)
        return tokens[first:]

    def _recall(self, tokens: list[int], first: int, start: int, position: int, line: int, recalled: set[int],
                rng: np.random.Generator) -> Played | None:
        """At bar line ``line``, the music's last onset at ``position``: maybe (``recall``) an earlier phrase of the
        new music, made to start there. Only at the start of a phrase from the third on, never right after a
        recall, and only fresh phrases come back."""
        span = PHRASE_BARS * self.bar
        opening = (start // self.bar + 1) * self.bar
        if (line - opening) % span or line - opening < 2 * span or line - span in recalled:
            return None
        if rng.random() >= self.recall:
            return None
        candidates = [s for s in range(opening, line - span + 1, span) if s not in recalled]
        phrase = self._phrase(tokens, first, start, candidates[rng.integers(len(candidates))]) if candidates else None
        if phrase is None:
            return None
        played = self._play(phrase, line, position, self._velocity(tokens))
        return played if played.notes >= MIN_PHRASE_NOTES else None

    def _play(self, phrase: Phrase, line: int, position: int, velocity: int | None) -> Played:
        """``phrase`` moved to bar line ``line``, after music whose last onset is at ``position`` and whose
        VELOCITY in effect is ``velocity``: shifts between its onsets, and its own velocity set first."""
        vocab, most = self.tokenizer.vocab, self.tokenizer.config.max_shift
        out, now = [], position
        for k, (t, group) in enumerate(phrase.events):
            at = line + t - phrase.start
            while at > now:
                step = min(at - now, most)
                out.append(vocab.encode("SHIFT", step))
                now += step
            if k == 0 and group[0] not in self.ranges["VELOCITY"] and phrase.velocity not in (None, velocity):
                out.append(phrase.velocity)
            out.extend(group)
        return Played(out, self._count(out), now)

    def _phrase(self, tokens: list[int], first: int, start: int, at: int) -> Phrase | None:
        """The phrase of the new music starting at bar line ``at``."""
        new = np.asarray(tokens[first:])
        shift = self.ranges["SHIFT"]
        is_shift = (new >= shift.start) & (new < shift.stop)
        times = start + np.cumsum(np.where(is_shift, new - shift.start + 1, 0))
        inside = np.flatnonzero(~is_shift & (times >= at) & (times < at + PHRASE_BARS * self.bar))
        if not len(inside):
            return None
        events: list[tuple[int, list[int]]] = []
        for i in inside:
            if not events or events[-1][0] != times[i]:
                events.append((int(times[i]), []))
            events[-1][1].append(int(new[i]))
        return Phrase(at, tuple((t, tuple(group)) for t, group in events), self._velocity(tokens[: first + inside[0]]))

    def _steer(self, steering: Steering, new: list[int], level: int | None) -> None:
        """Correct ``steering`` by the character of the new music so far (once it has ``MIN_NOTES`` notes);
        ``level``: the velocity level in force before it."""
        notes = TokenNotes.of(np.asarray(new), self.tokenizer, level, self.sounding)
        if len(notes.index) >= MIN_NOTES:
            steering.correct(self.target, notes.controls(0, len(new), self.tokenizer.config.steps_per_beat))

    def _fits(self, played: Played, notes: int, made: int, settings: SamplingSettings) -> bool:
        return (notes + played.notes <= settings.max_notes and made + len(played.tokens) <= settings.max_tokens
                and played.last_onset < settings.max_steps)

    def _before(self, added: list[int], position: int, end: int) -> list[int]:
        """``added``, written from grid step ``position``, cut before the SHIFT that reaches step ``end``."""
        shift = self.ranges["SHIFT"]
        for i, token in enumerate(added):
            if shift.start <= token < shift.stop:
                position += token - shift.start + 1
                if position >= end:
                    return added[:i]
        return added

    def _velocity(self, tokens: list[int]) -> int | None:
        """The last VELOCITY token of ``tokens`` (None: none)."""
        velocity = self.ranges["VELOCITY"]
        return next((t for t in reversed(tokens) if velocity.start <= t < velocity.stop), None)

    def _count(self, tokens: list[int]) -> int:
        pitch = self.ranges["PITCH"]
        return sum(pitch.start <= t < pitch.stop for t in tokens)

    def _steps(self, tokens: list[int]) -> int:
        shift = self.ranges["SHIFT"]
        return sum(t - shift.start + 1 for t in tokens if shift.start <= t < shift.stop)

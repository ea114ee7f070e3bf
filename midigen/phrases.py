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
  nothing ever comes back;
* **balances** (a named key, and endless streams): each pitch class's logit is corrected by how far its
  share of the music made is from the key's typical profile (``Steering.balance``); asked for a key, the
  model otherwise hammers the tonic and fifth until two pitch classes take 80 % of a minute. Streams also
  weigh down any duration that takes over half the notes (``Steering.vary``).

The writer reads the music a passage at a time (``MusicSoFar``: running sums, not rescans), so a bar costs
only its own tokens; with a ``memory`` of N bars everything it looks back on is the last N bars.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from .controls import Controls
from .rules import SamplingSettings
from .sample import Sampler
from .stats import MAJOR_PROFILE, MINOR_PROFILE

BAR_BEATS = 4
PHRASE_BARS = 2
RANGE_BIAS = -1000.0  # logit added to a PITCH token the instrument cannot sound (``range_bias``): never drawn
RANGE_MARGIN = 7.0  # the register target is kept this far inside the instrument's range (``PhraseWriter.aimed``)
KEY_BIAS = 0.75  # logit weight of log(key profile) on pitch tokens (``key_bias``)
LOUDNESS_HOLD = 1.0  # logit taken from a VELOCITY token per level it lies from the one held (``loudness_bias``)
GAIN = 0.5  # share of the remaining error corrected after each bar
MIN_NOTES = 8  # new notes written before steering starts
MIN_PHRASE_NOTES = 4  # fewer: not worth recalling
LIMITS = {"pitch": 12.0, "log_density": 1.5, "velocity": 32.0}  # most each correction may add
BALANCE_GAIN = 0.3  # share of the log error in each pitch class's share corrected after each bar (``balance``)
BALANCE_FLOOR = 0.02  # added to both shares, so a pitch class barely used is not pushed without end
BALANCE_LIMIT = 2.0  # most logit the balance may add or take from a pitch class
DURATION_CAP = 0.5  # share of the notes one duration may take before ``vary`` weighs it down
DURATION_GAIN = 0.3
DURATION_LIMIT = 3.0
RECENT_BARS = 8  # bars the balance and the duration variety read in a writer without memory
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
    return class_bias(by_class, tokenizer)


def class_bias(by_class: np.ndarray, tokenizer) -> np.ndarray:
    """Logit bias over the vocabulary giving each PITCH token the value of its pitch class in ``by_class`` (12)."""
    pitches = tokenizer.vocab.kind_ranges()["PITCH"]
    classes = (np.arange(len(pitches)) + tokenizer.config.pitch_min) % 12
    bias = np.zeros(len(tokenizer.vocab), dtype=np.float32)
    bias[pitches.start : pitches.stop] = np.asarray(by_class)[classes]
    return bias


def range_bias(span: tuple[int, int], tokenizer) -> np.ndarray:
    """Logit bias over the vocabulary forbidding the PITCH tokens outside ``span`` (lowest and highest pitch):
    ``RANGE_BIAS`` on each, 0 elsewhere."""
    pitches = tokenizer.vocab.kind_ranges()["PITCH"]
    played = np.arange(len(pitches)) + tokenizer.config.pitch_min
    bias = np.zeros(len(tokenizer.vocab), dtype=np.float32)
    bias[pitches.start : pitches.stop] = np.where((played < span[0]) | (played > span[1]), RANGE_BIAS, 0.0)
    return bias


def texture_bias(tokenizer, duration_lift: float, chord_lift: float) -> np.ndarray | None:
    """A style's constant logit bias (``styles.Style``): ``duration_lift`` times the log of each DURATION token's
    length in grid steps (longer notes), and ``chord_lift`` taken off every SHIFT token (more notes per onset).
    None when both are 0."""
    if not (duration_lift or chord_lift):
        return None
    ranges = tokenizer.vocab.kind_ranges()
    bias = np.zeros(len(tokenizer.vocab), dtype=np.float32)
    durations, shifts = ranges["DURATION"], ranges["SHIFT"]
    bias[durations.start : durations.stop] = duration_lift * np.log(np.arange(1, len(durations) + 1))
    bias[shifts.start : shifts.stop] = -chord_lift
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

    pitch: float = 0.0
    log_density: float = 0.0
    velocity: float = 0.0
    classes: np.ndarray = field(default_factory=lambda: np.zeros(12))  # logit added to each pitch class
    durations: np.ndarray | None = None  # logit added to each duration, 1 step up (``vary``)

    def vary(self, shares: np.ndarray) -> None:
        """Weigh down each duration that more than ``DURATION_CAP`` of the notes made last, by ``DURATION_GAIN``
        times the log of its excess after each bar, and let the others come back (never above 0)."""
        if self.durations is None:
            self.durations = np.zeros(len(shares))
        error = np.log(DURATION_CAP / np.maximum(shares, DURATION_CAP / 2))
        self.durations = np.clip(self.durations + DURATION_GAIN * error, -DURATION_LIMIT, 0.0)

    def balance(self, wanted: np.ndarray, made: np.ndarray) -> None:
        """Move each pitch class's logit by ``BALANCE_GAIN`` times the log of how much less of it sounds in the
        music made than in the ``wanted`` profile (both duration-weighted, summing to 1)."""
        error = np.log((wanted + BALANCE_FLOOR) / (np.asarray(made) + BALANCE_FLOOR))
        self.classes = np.clip(self.classes + BALANCE_GAIN * error, -BALANCE_LIMIT, BALANCE_LIMIT)

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


@dataclass
class NoteSums:
    """Running sums of some notes: enough for their register, density and loudness, exactly as
    ``Controls.of_notes`` measures them (the sums are of integers)."""

    count: int = 0
    pitch: int = 0
    velocity: int = 0
    first: int | None = None  # earliest onset
    last: int | None = None  # latest onset
    profile: np.ndarray = field(default_factory=lambda: np.zeros(12, dtype=np.int64))  # duration per pitch class
    durations: Counter = field(default_factory=Counter)  # notes of each duration (grid steps)

    def add(self, pitch: int, onset: int, velocity: int, duration: int) -> None:
        self.count += 1
        self.pitch += pitch
        self.velocity += velocity
        self.first = onset if self.first is None else min(self.first, onset)
        self.last = onset if self.last is None else max(self.last, onset)
        self.profile[pitch % 12] += duration
        self.durations[duration] += 1

    def remove(self, other: NoteSums) -> None:
        """Take away the sums of ``other``, some of these notes; the onsets are set again by the caller."""
        self.count -= other.count
        self.pitch -= other.pitch
        self.velocity -= other.velocity
        self.profile -= other.profile
        self.durations -= other.durations

    def controls(self, steps_per_beat: int) -> Controls:
        """The controls of these notes (nothing known for none)."""
        if not self.count:
            return Controls()
        total = self.profile.sum()
        return Controls(tuple((self.profile / total).tolist()), self.pitch / self.count,
                        self.count / max((self.last - self.first) / steps_per_beat, 1.0), self.velocity / self.count)


class MusicSoFar:
    """The new music as the writer reads it, a passage at a time (each costs only its own tokens): running sums of
    its notes for steering, its onsets by bar for recalls, and its last ``CONTEXT`` tokens. With ``memory`` (bars)
    only the last ``memory`` bars are kept and counted; without, all of it.

    Notes are read as ``TokenNotes.of`` reads them: a PITCH lasts its DURATION (a beat without one) and plays at the
    velocity of the level in force (``sounding``, or the level's middle; before any level, velocity 80's level).
    """

    def __init__(self, tokenizer, prompt: list[int], start: int, sounding: dict[int, int] | None = None,
                 memory: int | None = None):
        c = tokenizer.config
        self.ranges = tokenizer.vocab.kind_ranges()
        self.spb, self.bar, self.pitch_min, self.memory = c.steps_per_beat, BAR_BEATS * c.steps_per_beat, \
            c.pitch_min, memory
        self.loud = [(sounding or {}).get(v, tokenizer.level_velocity(v)) for v in range(c.velocity_levels)]
        velocity = self.ranges["VELOCITY"]
        self.velocity = next((t for t in reversed(prompt) if t in velocity), None)  # the last VELOCITY token
        self.level = tokenizer.velocity_level(80) if self.velocity is None else self.velocity - velocity.start
        self.now = start  # grid step of the last onset
        self.tail: deque[int] = deque(prompt, maxlen=CONTEXT)
        self.notes = 0  # PITCH tokens heard
        self.pending: tuple[int, int, int] | None = None  # (pitch, onset, velocity) of a PITCH awaiting its DURATION
        self.sums = NoteSums()  # of the notes counted
        self.by_bar: dict[int, NoteSums] = {}  # each recent bar's own (the last ``memory`` or ``RECENT_BARS``)
        self.events: dict[int, tuple[int | None, list[tuple[int, list[int]]]]] = {}  # bar: (VELOCITY before, onsets)

    def hear(self, tokens: list[int]) -> None:
        """Read ``tokens``, the next ones written."""
        shift, pitch, duration, velocity = (self.ranges[k] for k in ("SHIFT", "PITCH", "DURATION", "VELOCITY"))
        for token in tokens:
            self.tail.append(token)
            if self.pending is not None:
                self._count(*self.pending, token - duration.start + 1 if token in duration else self.spb)
                self.pending = None
            if token in shift:
                self.now += token - shift.start + 1
                self._forget()
                continue
            before, onsets = self.events.setdefault(self.now // self.bar, (self.velocity, []))
            if not onsets or onsets[-1][0] != self.now:
                onsets.append((self.now, []))
            onsets[-1][1].append(token)
            if token in velocity:
                self.velocity, self.level = token, token - velocity.start
            elif token in pitch:
                self.pending = (token - pitch.start + self.pitch_min, self.now, self.loud[self.level])
                self.notes += 1

    def recent_profile(self) -> np.ndarray:
        """The duration-weighted pitch-class profile of the recent bars (zeros for no notes)."""
        profile = sum((s.profile for s in self.by_bar.values()), np.zeros(12))
        return profile / max(profile.sum(), 1)

    def duration_shares(self, longest: int) -> np.ndarray:
        """The share of the notes of the recent bars that last each duration, 1 to ``longest`` grid steps."""
        shares = np.zeros(longest)
        for sums in self.by_bar.values():
            for duration, count in sums.durations.items():
                shares[duration - 1] += count
        return shares / max(shares.sum(), 1)

    def controls(self) -> Controls:
        """Register, density and loudness of the notes heard (within memory; a pending one lasting a beat)."""
        sums = replace(self.sums, profile=self.sums.profile.copy(), durations=Counter())  # a copy to add to
        if self.memory is not None:
            kept = [s for s in self.by_bar.values() if s.count]
            sums.first = min((s.first for s in kept), default=None)
            sums.last = max((s.last for s in kept), default=None)
        if self.pending is not None:
            sums.add(*self.pending, self.spb)
        return sums.controls(self.spb)

    def phrase(self, at: int) -> Phrase | None:
        """The phrase starting at bar line ``at`` (None: nothing heard in it, or forgotten)."""
        bars = [self.events[b] for b in range(at // self.bar, at // self.bar + PHRASE_BARS) if b in self.events]
        if not bars:
            return None
        return Phrase(at, tuple((t, tuple(group)) for _, onsets in bars for t, group in onsets), bars[0][0])

    def _count(self, pitch: int, onset: int, velocity: int, duration: int) -> None:
        self.sums.add(pitch, onset, velocity, duration)
        self.by_bar.setdefault(onset // self.bar, NoteSums()).add(pitch, onset, velocity, duration)

    def _forget(self) -> None:
        """Drop the bars that fell out of memory (without: only those older than the recent bars)."""
        oldest = self.now // self.bar - (self.memory or RECENT_BARS) + 1
        for bar in [b for b in self.by_bar if b < oldest]:
            dropped = self.by_bar.pop(bar)
            if self.memory is not None:
                self.sums.remove(dropped)
        if self.memory is not None:
            for bar in [b for b in self.events if b < oldest]:
                del self.events[bar]


class PhraseWriter:
    """Writes one continuation bar by bar (module docstring). ``target``: the character to keep (None: a
    model without controls, which is neither steered nor given a key); ``recall``: the chance that a phrase is
    an earlier one played again; ``key``: the key held by ``key_bias`` (0-11 major, 12-23 minor; None: none);
    ``loudness``: the velocity level held by ``loudness_bias`` (None: none); ``sounding``: the velocity each level
    will play at (``Tokenizer.level_velocities`` of the seed), which the loudness is steered on. ``pitch_range``: the
    lowest and highest pitch the instrument sounds at (``ranges``; None: all): no note is written outside it
    (``range_bias``), and the register is steered inside it (``aimed``).

    ``target``, ``recall``, ``key`` (and ``key_weight``), ``loudness``, ``temperature`` (None: the settings'),
    ``pitch_range``, ``balance`` and ``vary_durations`` are read again at every bar, so a stream (``passages``) follows
    changes to them from the next bar on.
    """

    def __init__(self, sampler: Sampler, target: Controls | None, recall: float,
                 key: int | None = None, loudness: int | None = None, sounding: dict[int, int] | None = None):
        self.sampler = sampler
        self.recall = recall
        self.recall_after = 0  # grid step: phrases starting before it are not recalled (an endless stream's key change)
        self.tokenizer = sampler.tokenizer
        self.ranges = self.tokenizer.vocab.kind_ranges()
        self.bar = BAR_BEATS * self.tokenizer.config.steps_per_beat
        self.target = target
        self.sounding = sounding
        self.key = key
        self.key_weight = KEY_BIAS
        self.loudness = loudness
        self.temperature: float | None = None
        self.balance: np.ndarray | None = None  # a pitch-class profile the music is held near (``Steering.balance``)
        self.vary_durations = False  # whether no duration may take over (``Steering.vary``)
        self.texture: np.ndarray | None = None  # the style's constant bias (``texture_bias``)
        self.pitch_range: tuple[int, int] | None = None  # the pitches the instrument sounds at (None: all)
        self.register_offset = 0.0  # semitones asked above the target at first (``Style.register_offset``)

    @property
    def bias(self) -> np.ndarray | None:
        """The logit bias holding the key and the loudness, with the style's texture and the instrument's range (None:
        none of them)."""
        biases = ([] if self.key is None else [key_bias(self.key, self.tokenizer, self.key_weight)]) + (
            [] if self.loudness is None else [loudness_bias(self.loudness, self.tokenizer)]) + (
            [] if self.texture is None else [self.texture]) + (
            [] if self.pitch_range is None else [range_bias(self.pitch_range, self.tokenizer)])
        return sum(biases) if biases else None

    @property
    def aimed(self) -> Controls | None:
        """The target steered toward: ``target`` with its register moved ``RANGE_MARGIN`` inside ``pitch_range`` (or to
        its middle, if narrower)."""
        target, span = self.target, self.pitch_range
        if target is None or span is None or target.mean_pitch is None:
            return target
        margin = min(RANGE_MARGIN, (span[1] - span[0]) / 2)
        return target.replace(mean_pitch=float(np.clip(target.mean_pitch, span[0] + margin, span[1] - margin)))

    def write(self, prompt: list[int], settings: SamplingSettings, random_seed: int, position: int) -> list[int]:
        """New tokens after ``prompt``, whose last onset is at grid step ``position``, within ``settings``' limits
        (notes, steps and tokens, as ``Sampler.sample``)."""
        return [token for passage in self.passages(prompt, settings, random_seed, position) for token in passage]

    def passages(self, prompt: list[int], settings: SamplingSettings, random_seed: int, position: int,
                 memory: int | None = None) -> Iterator[list[int]]:
        """``write``'s tokens, a passage at a time: the rest of a bar, or a recalled phrase. With ``memory`` (bars)
        steering and recalls read only the last ``memory`` bars, so an endless stream costs the same at every bar."""
        rng = np.random.Generator(np.random.PCG64(random_seed))
        steering = Steering(pitch=self.register_offset)
        music = MusicSoFar(self.tokenizer, prompt, position, self.sounding, memory)
        start, state, notes, made = position, None, 0, 0
        stop_at = (position // self.bar + 1) * self.bar  # where the next call stops: the next bar line
        reached = None  # the bar line the new music has just come to, if it has
        recalled: set[int] = set()  # bar lines where a recall starts (never recalled themselves)
        for call in itertools.count():
            if notes >= settings.max_notes or made >= settings.max_tokens or position >= settings.max_steps:
                return
            target = self.aimed
            control = None if target is None else steering.asked(target).vector()
            played = None if reached is None else self._recall(music, start, position, reached, recalled, rng)
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
                              max_tokens=min(settings.max_tokens - made, BAR_TOKENS),
                              temperature=self.temperature or settings.temperature)
                context = prompt if state is None else list(music.tail)  # with a state only the last chord is read
                bias = self.bias
                if self.balance is not None:
                    bias = class_bias(steering.classes, self.tokenizer) + (0 if bias is None else bias)
                if steering.durations is not None:
                    bias = self._duration_bias(steering.durations) + (0 if bias is None else bias)
                sampler = self.sampler if self.pitch_range is None else self.sampler.below(
                    self.pitch_range[1] - self.tokenizer.config.pitch_min + self.ranges["PITCH"].start)
                rows, states = sampler.sample_states(context, bar, 1, random_seed * 100_003 + call, position,
                                                          control, bias, state)
                added, state = rows[0], states[0]
                if not added:
                    return
                position += self._steps(added)
                if position >= settings.max_steps and notes:  # its first onset went past the end: the piece ends
                    yield self._before(added, position - self._steps(added), settings.max_steps)
                    return
                # stopped at the bar line, or went past it (a bar left empty): then on to the next line
                reached, stop_at = ((stop_at, stop_at + self.bar) if position < stop_at
                                    else (None, (position // self.bar + 1) * self.bar))
            music.hear(added)
            made += len(added)
            notes += self._count(added)
            if memory is not None:
                recalled = {line for line in recalled if line >= position - memory * self.bar}
            if target is not None and music.notes >= MIN_NOTES:
                steering.correct(target, music.controls())
                if self.balance is not None:
                    steering.balance(self.balance, music.recent_profile())
                if self.vary_durations:
                    steering.vary(music.duration_shares(self.tokenizer.config.max_duration))
            yield added

    def _recall(self, music: MusicSoFar, start: int, position: int, line: int, recalled: set[int],
                rng: np.random.Generator) -> Played | None:
        """At bar line ``line``, the music's last onset at ``position``: maybe (``recall``) an earlier phrase of the
        new music, made to start there. Only at the start of a phrase from the third on, never right after a
        recall, and only fresh phrases still in memory come back."""
        span = PHRASE_BARS * self.bar
        opening = (start // self.bar + 1) * self.bar
        if (line - opening) % span or line - opening < 2 * span or line - span in recalled:
            return None
        if rng.random() >= self.recall:
            return None
        oldest = opening if music.memory is None else max(opening, line - music.memory * self.bar)
        oldest = max(oldest, self.recall_after)
        first = opening + -(-(oldest - opening) // span) * span
        candidates = [s for s in range(first, line - span + 1, span) if s not in recalled]
        phrase = music.phrase(candidates[rng.integers(len(candidates))]) if candidates else None
        if phrase is None:
            return None
        played = self._play(phrase, line, position, music.velocity)
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

    def _duration_bias(self, by_duration: np.ndarray) -> np.ndarray:
        bias = np.zeros(len(self.tokenizer.vocab), dtype=np.float32)
        durations = self.ranges["DURATION"]
        bias[durations.start : durations.stop] = by_duration
        return bias

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

    def _count(self, tokens: list[int]) -> int:
        pitch = self.ranges["PITCH"]
        return sum(pitch.start <= t < pitch.stop for t in tokens)

    def _steps(self, tokens: list[int]) -> int:
        shift = self.ranges["SHIFT"]
        return sum(t - shift.start + 1 for t in tokens if shift.start <= t < shift.stop)

"""An endless stream of new music, written a bar at a time and steered while it plays.

``EndlessStream`` runs the phrase writer (``PhraseWriter.passages``) with a bounded memory: steering, the
pitch-class balance and recalls read only the last few bars (``MEMORY_BARS``, fewer at slow tempi), so every
bar costs the same, the writer's memory stays flat over an hour, and a change is heard within a minute. (The
session's tokens are kept too, two bytes each, for ``midi_bytes``: about 0.25 MB an hour.)

Each ``advance`` writes one more passage and returns the notes that became final; ``steer`` changes the key,
density, temperature or repetition from the next bar on; ``midi_bytes`` is the session so far as a file.
"""

from __future__ import annotations

import secrets
from array import array
from dataclasses import replace

import numpy as np

from .generate import NAMED_KEY_BIAS, GenerationRequest, Generator
from .phrases import BAR_BEATS, KEY_BIAS, PHRASE_BARS
from .rules import SamplingSettings
from .settings import MAX_RANDOM_SEED
from .splice import Seed, midi_bytes, splice
from .tokenizer import DEFAULT_VELOCITY, Score

MEMORY_BARS = 8  # most bars that steering and recalls look back on (four phrases)...
MEMORY_SECONDS = 20.0  # ...and fewer at slow tempi, so that a change is heard within a minute
ENDLESS = 2**31 - 1  # no limit on notes, steps or tokens

StreamNote = tuple[int, float, float, int]  # (pitch, start_s, end_s, velocity)


class NoteReader:
    """Token ids to notes as they are written, with ``Tokenizer.tokens_to_score``'s meaning: a PITCH lasts its
    DURATION (a beat without one) and plays at the velocity in force; one key twice in a chord sounds once, the
    longer. A note is handed out as soon as its chord is complete (the music has moved past its onset), with the
    length it was written with: a key struck again while it sounds ends it there, which the decoder writes as a
    shorter note and a synthesizer does by itself (``SynthStream.schedule_notes``). ``start``: the grid step where
    the new music begins; ``skip``: (pitch, step) of notes already there (a seed's last chord), which new presses
    merge into rather than repeat."""

    def __init__(self, tokenizer, prompt: list[int], start: int, sounding: dict[int, int],
                 skip: frozenset[tuple[int, int]] = frozenset()):
        self.tokenizer, self.ranges, self.sounding, self.skip = tokenizer, tokenizer.vocab.kind_ranges(), sounding, skip
        self.now, self.velocity, self.beat = start, DEFAULT_VELOCITY, tokenizer.config.steps_per_beat
        self.pitch: int | None = None  # a PITCH awaiting its DURATION
        self.chord: dict[int, tuple[int, int, int, int]] = {}  # the notes at the last onset, by key: it may grow
        self.read([t for t in prompt if t in self.ranges["VELOCITY"]][-1:])  # the loudness in force after the prompt

    def read(self, tokens: list[int]) -> list[tuple[int, int, int, int]]:
        """The (pitch, start, duration, velocity) notes, on the grid, whose chords ``tokens`` complete, by start."""
        shift, pitch, duration, velocity = (self.ranges[k] for k in ("SHIFT", "PITCH", "DURATION", "VELOCITY"))
        complete = []
        for token in tokens:
            if self.pitch is not None:
                self._press(self.pitch, token - duration.start + 1 if token in duration else self.beat)
                self.pitch = None
            if token in shift:
                complete += sorted(self.chord.values())
                self.chord = {}
                self.now += token - shift.start + 1
            elif token in velocity:
                level = token - velocity.start
                self.velocity = self.sounding.get(level) or self.tokenizer.level_velocity(level)
            elif token in pitch:
                self.pitch = token - pitch.start + self.tokenizer.config.pitch_min
        return complete

    @property
    def frontier(self) -> int:
        """Grid step before which every note has been handed out."""
        return self.now

    def _press(self, pitch: int, duration: int) -> None:
        if (pitch, self.now) in self.skip:
            return
        before = self.chord.get(pitch)
        if before is None or before[2] < duration:
            self.chord[pitch] = (pitch, self.now, duration, self.velocity)


class EndlessStream:
    """New music without end, from scratch or after ``seed`` (as ``Generator.generate`` continues it), with
    ``request``'s temperature, top-p, key, density, repetition, tempo (from scratch), program and random seed (None:
    random); its length is ignored."""

    def __init__(self, generator: Generator, request: GenerationRequest, seed: Seed | None = None):
        tok, request = generator.tokenizer, generator.styled(request)
        self.generator, self.request, self.seed = generator, request, seed
        self.random_seed = (secrets.randbelow(MAX_RANDOM_SEED + 1) if request.random_seed is None
                            else request.random_seed)
        score = tok.midi_to_score(seed.primed) if seed is not None else Score([], request.bpm or 0.0)
        if not score.bpm:
            score = replace(score, bpm=generator.opening_tempo(self.random_seed))
        self.score = score
        self.bpm = seed.bpm if seed is not None else score.bpm
        self.sounding = tok.level_velocities(score)
        self.velocities = generator.played(self.sounding)  # how loud each level sounds (``Generator.played``)
        self.heard = generator.heard(score)  # the seed's pitch-class profile and its share (``Generator.balance``)
        self.start = score.notes[-1].start if score.notes else 0
        self.prompt = tok.score_to_tokens(score, add_eos=False)
        unasked = replace(request, key="auto", density="auto")
        if score.notes or not generator.checkpoint.model_config.control_size:
            self.base = generator.controls(unasked, score)
            self.writer = generator.continuation_writer(request, generator.asked(request, self.base), self.sounding,
                                                       self.heard)
            writer_seed, opening = self.random_seed, []
        else:
            writer_seed = self.random_seed + 1
            self.base = generator.character(unasked, writer_seed)
            self.writer, opening = generator.scratch_writer(request, writer_seed)
        self._follow()
        settings = SamplingSettings(request.temperature, request.top_p, ENDLESS, ENDLESS, ENDLESS)
        bar_seconds = 60.0 / self.bpm * BAR_BEATS
        memory = int(np.clip(round(MEMORY_SECONDS / bar_seconds), PHRASE_BARS, MEMORY_BARS))
        self._passages = self.writer.passages(self.prompt + opening, settings, writer_seed, self.start, memory)
        self.tokens = array("H", opening)  # every new token, for ``midi_bytes``
        skip = frozenset((n.pitch, n.start) for n in score.notes if n.start == self.start)
        self.reader = NoteReader(tok, self.prompt, self.start, self.velocities, skip)
        self.reader.read(opening)
        self.seconds_per_step = 60.0 / self.bpm / tok.config.steps_per_beat

    def steer(self, *, key: str | None = None, density: str | None = None, temperature: float | None = None,
              repetition: float | None = None) -> None:
        """Change what the stream keeps from the next bar on (checked as ``GenerationRequest`` checks it)."""
        changes = {name: value for name, value in (("key", key), ("density", density), ("temperature", temperature),
                                                   ("repetition", repetition)) if value is not None}
        request = replace(self.request, **changes)  # raises ValueError on a bad value
        if request.key != self.request.key:  # phrases in the old key do not come back
            self.writer.recall_after = self.reader.now
        self.request = request
        self._follow()

    def _follow(self) -> None:
        """Hand the request's key, density, temperature and repetition to the writer, with what keeps an endless
        stream music: its pitch classes held near the typical profile of its key and its seed's (``Generator.balance``;
        else the model, asked for a key, hammers its tonic and fifth ever harder) and no duration taking over."""
        writer, request, generator = self.writer, self.request, self.generator
        writer.temperature, writer.recall = request.temperature, request.repetition
        if writer.target is None:  # weights without controls: nothing to steer
            return
        writer.target = generator.asked(request, self.base)
        writer.key = None if not self.score.notes and request.key == "auto" else generator.held_key(writer.target)
        writer.balance = generator.balance(request, writer.target, self.heard)
        writer.key_weight = KEY_BIAS if request.key in ("auto", "free") else NAMED_KEY_BIAS
        writer.vary_durations = True

    @property
    def written(self) -> float:
        """Seconds of new music written so far (to its last onset): ``steer`` acts from here on."""
        return self._seconds(self.reader.now)

    def advance(self) -> list[StreamNote]:
        """Write the next bar (or recalled phrase); the notes that became final, in seconds of new music."""
        added = next(self._passages, None)
        if added is None:
            raise RuntimeError("the model stopped writing")
        self.tokens.extend(added)
        return [(pitch, self._seconds(start), self._seconds(start + duration), velocity)
                for pitch, start, duration, velocity in self.reader.read(added)]

    @property
    def frontier(self) -> float:
        """Seconds of new music before which every note has been returned by ``advance``."""
        return self._seconds(self.reader.frontier)

    def new_music(self, until: float | None = None) -> Score:
        """The new notes starting before ``until`` seconds of new music (None: all written), decoded as
        ``generate`` decodes them, on the seed's grid (from ``start``) at the new music's tempo."""
        tok = self.generator.tokenizer
        full = tok.tokens_to_score(self.prompt + self.tokens.tolist(), bpm=self.score.bpm, velocities=self.velocities)
        seed_keys = {(n.pitch, n.start) for n in self.score.notes}
        return Score([n for n in full.notes if (n.pitch, n.start) not in seed_keys
                      and (until is None or self._seconds(n.start) < until)], self.bpm)

    def midi_bytes(self, until: float | None = None) -> bytes:
        """The session as one MIDI file: the seed kept as ``generate`` keeps it and the new music as a track of its
        own (from scratch: the new music alone), only notes starting before ``until`` seconds of new music."""
        continuation = self.new_music(until)
        if self.seed is not None:
            steps_per_beat = self.generator.tokenizer.config.steps_per_beat
            return splice(self.seed, continuation, steps_per_beat, self.request.program)[1]
        return midi_bytes(self.generator.tokenizer.score_to_midi(continuation, program=self.request.program))

    def _seconds(self, step: int) -> float:
        return (step - self.start) * self.seconds_per_step


def play(stream: EndlessStream, minutes: float, changes: list[tuple[float, dict]] = ()) -> int:
    """Write the stream's first ``minutes`` as fast as the machine allows, steering it by each of ``changes``
    (minute, ``steer``'s arguments) once the music written reaches that minute; the new notes starting before the
    end."""
    end, notes, waiting = minutes * 60.0, 0, sorted(changes, key=lambda change: change[0])
    while stream.frontier < end:
        while waiting and stream.written >= waiting[0][0] * 60.0:
            stream.steer(**waiting.pop(0)[1])
        notes += sum(start < end for _, start, _, _ in stream.advance())
    return notes

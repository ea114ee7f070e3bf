"""From settings (and an optional seed) to finished MIDI: the one call the CLI and app make."""

from __future__ import annotations

import copy
import math
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pretty_midi

from . import checkpoint, ranges, soundfonts, styles
from .controls import DENSITY_LEVELS, KEY_NAMES, ControlLevels, Controls, key_index
from .device import resolve_device, usable_cores
from .phrases import PhraseWriter, texture_bias
from .render import RenderUnavailable
from .sample import NumbaSampler, SamplingSettings, TorchSampler
from .settings import MAX_RANDOM_SEED, check_range, setting
from .splice import Seed, midi_bytes, splice
from .stats import estimate_key, score_profile
from .styles import AUTO
from .tokenizer import BOS, DEFAULT_BPM, Note, Score, Tokenizer

TOKENS_PER_NOTE = 4
TOKENS_PER_SECOND = 80
# How a named key is given to the model and held, chosen with `midigen evaluate` (weights/README.md):
KEY_STRENGTH = 1.5  # a key named by the user is stressed 1.5x as hard as in training (``Controls.key_strength``)
# ...which alone makes the model hammer the tonic and fifth; the writer holds the pitch classes near (``balance``):
NAMED_CLARITY = 0.3  # share of the named key's clear profile in the typical one of that key
NAMED_KEY_BIAS = 1.5  # a named key's ``key_bias`` weight (others: ``phrases.KEY_BIAS``)
SEED_BALANCE = 0.5  # share of a seed's own pitch-class profile in the one its continuation is held near (``balance``)
SEED_BALANCE_NOTES = 40  # ...for a seed of at least this many notes; a shorter one's profile counts for less


@dataclass(frozen=True)
class GenerationRequest:
    """What the user asked for. Length is ``notes`` new notes or ``seconds`` of new music."""

    temperature: float = setting("temperature").default
    top_p: float = setting("top_p").default
    notes: int | None = None
    seconds: float | None = setting("seconds").default
    bpm: float | None = None
    program: int | None = None  # None: the style's instrument
    random_seed: int | None = None
    variations: int = setting("variations").default
    continuation_only: bool = not setting("keep_seed").default
    keep_seed_until: float | None = None  # seconds: the seed is cut there and the rest composed again
    key: str = "auto"  # "auto" (the seed's), "free", or one of KEY_NAMES such as "D minor"
    density: str = "auto"  # "auto" (the seed's) or one of DENSITY_LEVELS, sparse to dense
    repetition: float = setting("repetition").default  # chance that a phrase is an earlier one again
    soundfont: str = setting("soundfont").default  # what the audio is played with: notes stay where the program sounds
    style: str = AUTO  # a style's name, or "auto": the one whose model finds the seed likeliest (``style_choice``)

    @classmethod
    def from_settings(cls, cleaned: dict) -> GenerationRequest:
        """The request for settings from ``settings.clean_settings`` (length in seconds)."""
        return cls(
            temperature=cleaned["temperature"],
            top_p=cleaned["top_p"],
            seconds=cleaned["seconds"],
            notes=None,
            bpm=cleaned["bpm"] or None,  # 0 or None: the seed's tempo, or the model's choice
            program=None if cleaned["program"] in (None, -1) else cleaned["program"],  # None: the style's
            random_seed=None if cleaned["randomize"] else cleaned["random_seed"],
            variations=cleaned["variations"],
            continuation_only=not cleaned["keep_seed"],
            keep_seed_until=cleaned["keep_seed_until"] or None,
            key=cleaned["key"],
            density=cleaned["density"],
            repetition=cleaned["repetition"],
            soundfont=cleaned["soundfont"],
            style=cleaned["style"],
        )

    def __post_init__(self):
        if (self.notes is None) == (self.seconds is None):
            raise ValueError("give exactly one of notes and seconds")
        if self.notes is not None and self.notes < 1:
            raise ValueError("notes must be at least 1")
        if self.seconds is not None and not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError("seconds must be a positive number")
        for name in ("temperature", "top_p", "bpm", "program", "random_seed", "keep_seed_until", "repetition"):
            check_range(name, getattr(self, name))
        if self.variations < 1:
            raise ValueError("variations must be at least 1")
        if self.key not in ("auto", "free"):
            key_index(self.key)
        if self.density not in ("auto", *DENSITY_LEVELS):
            raise ValueError(f"density must be auto or one of {', '.join(DENSITY_LEVELS)}, not {self.density!r}")
        if self.style != AUTO:
            styles.style(self.style)
        if self.soundfont not in soundfonts.BY_NAME:
            raise ValueError(f"soundfont must be one of {', '.join(soundfonts.BY_NAME)}, not {self.soundfont!r}")


@dataclass
class Generated:
    """One variation: the MIDI file, what it plays, and the notes the model read and wrote.

    ``data`` is the file to write (made from ``midi`` when first read, unless given). ``midi`` is what it
    plays, in seconds: the seed's instruments when the seed is kept (shared with the seed, not copied), then
    the new music as its last instrument. ``seed_score`` and ``continuation`` are on the model's grid: the seed as
    the model read it, and the new notes.
    """

    midi: pretty_midi.PrettyMIDI
    seed_score: Score
    continuation: Score
    tokens: list[int]
    random_seed: int
    written: bytes | None = None
    style: str = ""

    @property
    def data(self) -> bytes:
        if self.written is None:
            self.written = midi_bytes(self.midi)
        return self.written

    @property
    def new_music(self) -> pretty_midi.Instrument:
        return self.midi.instruments[-1]

    @property
    def seconds(self) -> float:
        return self.midi.get_end_time()

    def __repr__(self) -> str:
        return (f"Generated(seed_score={len(self.seed_score.notes)} notes, "
                f"continuation={len(self.continuation.notes)} notes, "
                f"{self.seconds:.1f} s)")


class Generator:
    """A loaded model ready to sample: weights are read once, here. ``style`` gives the instrument and tempo of
    requests that leave them to it, and the style named in what it writes."""

    def __init__(self, weights: str | Path = checkpoint.DEFAULT_WEIGHTS, device: str = "auto",
                 style: styles.Style = styles.DEFAULT):
        self.style = style
        self.checkpoint = checkpoint.load(weights)
        self.levels = ControlLevels.from_dict(self.checkpoint.info.get("controls"))
        # the velocity each level plays at where a seed does not say: as the training pieces play it
        self.level_loudness = {level: velocity for level, velocity in enumerate(self.levels.loudness) if velocity}
        self.tokenizer = Tokenizer(self.checkpoint.tokenizer_config)
        self.device = resolve_device(device)
        self.sampler = self._make_sampler(self.device)
        self.texture = texture_bias(self.tokenizer, style.duration_lift, style.chord_lift)

    def _make_sampler(self, device: str):
        if device == "cpu":
            return NumbaSampler(self.checkpoint, self.tokenizer)
        return TorchSampler(self.checkpoint, self.tokenizer, device)

    def on(self, device: str) -> Generator:
        """A generator sharing these weights that samples on ``device`` ('cpu' or 'cuda'), checked only
        when sampling starts (ZeroGPU attaches its GPU for each call). The weights move there once, here."""
        other = copy.copy(self)
        other.device, other.sampler = device, self._make_sampler(device)
        return other

    def __repr__(self) -> str:
        return f"Generator({self.style.name}, {self.checkpoint.model_config}, device={self.device})"

    def styled(self, request: GenerationRequest) -> GenerationRequest:
        """``request`` in this generator's style, with the style's instrument unless one is asked for."""
        program = self.style.program if request.program is None else request.program
        return replace(request, style=self.style.name, program=program)

    def opening_tempo(self, random_seed: int) -> float:
        """The tempo of a piece from scratch with none asked: the style's, or the model's own choice."""
        return self.style.bpm or self.sample_tempo(random_seed)

    def generate(self, request: GenerationRequest,
                 seed: Seed | pretty_midi.PrettyMIDI | None = None) -> list[Generated]:
        """Sample ``request.variations`` pieces continuing ``seed`` (or from scratch).

        With the seed kept (``request.continuation_only`` False) the output is the seed file as it is plus
        the new music, which keeps the seed's final tempo (``request.bpm`` then only applies without a seed
        or with ``continuation_only``).
        """
        if isinstance(seed, pretty_midi.PrettyMIDI):
            seed = Seed.from_midi(seed)
        if seed is None:
            return self.continue_score(request, Score([], request.bpm or 0.0))
        return self.continue_score(request, self.tokenizer.midi_to_score(seed.primed), seed)

    def controls(self, request: GenerationRequest, seed_score: Score) -> Controls:
        """What a continuation is asked to keep: the seed's key (estimated), register, density and loudness,
        with the key and density the request names instead (pieces from scratch: ``character``). A key is
        given as a clear profile of that key measured on the training data (``ControlLevels``)."""
        if self.checkpoint.model_config.control_size == 0:
            if request.key != "auto" or request.density != "auto":
                raise ValueError("these weights were trained without key and density controls: "
                                 "use key and density auto, or weights trained by this version of midigen")
            return Controls()
        controls = Controls.of_score(seed_score, self.tokenizer.config.steps_per_beat)
        if controls.profile is not None and request.key == "auto":
            estimated = KEY_NAMES[estimate_key(np.asarray(controls.profile))]
            controls = controls.replace(profile=self.levels.key_profile(estimated))
        return self.asked(request, controls)

    def character(self, request: GenerationRequest, random_seed: int) -> Controls:
        """What a piece from scratch keeps: the key profile, register and loudness of a random training piece
        (``ControlLevels.character``; its density is the model's own), with the key and density the request
        names instead."""
        return self.asked(request, self.levels.character(np.random.Generator(np.random.PCG64(random_seed))))

    def asked(self, request: GenerationRequest, controls: Controls) -> Controls:
        """``controls`` with the key and density the request names (``free``: no key)."""
        if request.key == "free":
            controls = controls.replace(profile=None)
        elif request.key != "auto":  # stressed harder than anything in training, so that it wins
            controls = controls.replace(profile=self.levels.key_profile(request.key), key_strength=KEY_STRENGTH)
        if request.density != "auto":
            controls = controls.replace(notes_per_beat=self.levels.notes_per_beat(request.density))
        return controls

    def continue_score(self, request: GenerationRequest, seed_score: Score,
                       seed: Seed | None = None) -> list[Generated]:
        """``generate`` for a seed that is already a score (``seed_score``; empty: from scratch); ``seed``, the file
        it was read from, is what the output keeps."""
        tok, request = self.tokenizer, self.styled(request)
        random_seed = secrets.randbelow(MAX_RANDOM_SEED + 1) if request.random_seed is None else request.random_seed
        kept = seed is not None and not request.continuation_only
        if request.bpm and not kept:
            seed_score = replace(seed_score, bpm=request.bpm)
        if not seed_score.bpm:
            seed_score = replace(seed_score, bpm=self.opening_tempo(random_seed))
        prompt = tok.score_to_tokens(seed_score, add_eos=False)
        position = seed_score.notes[-1].start if seed_score.notes else 0
        bpm = seed.bpm if kept else seed_score.bpm  # the tempo the new music plays at
        # a kept seed's tempo map goes on after its last note: the seconds asked are counted under it
        steps = seed.steps_after(request.seconds, tok.config.steps_per_beat) if kept and request.seconds else None
        sampling = self._sampling(request, position, bpm, steps)
        sounding = tok.level_velocities(seed_score)  # how loud each level plays: as the seed played it
        target = self.controls(request, seed_score)  # also refuses a key or density the weights cannot take
        if seed_score.notes or not self.checkpoint.model_config.control_size:
            writer = self.continuation_writer(request, target, sounding, self.heard(seed_score))
            rows = self._each_variation(request.variations,
                                        lambda row: writer.write(prompt, sampling, random_seed + row, position))
        else:
            rows = self._each_variation(request.variations, lambda row: self._from_scratch(
                request, prompt, sampling, random_seed + 1 + row))
        results = []
        for tokens in rows:
            full = tok.tokens_to_score(prompt + tokens, bpm=seed_score.bpm, velocities=self.played(sounding))
            seed_keys = {(n.pitch, n.start) for n in seed_score.notes}
            continuation = Score([n for n in full.notes if (n.pitch, n.start) not in seed_keys], bpm)
            if kept:
                midi, data = splice(seed, continuation, tok.config.steps_per_beat, request.program)
            else:
                midi = tok.score_to_midi(shift_to_zero(continuation) if request.continuation_only else full,
                                         program=request.program)
                data = None  # written when first asked for (``Generated.data``): the page streams before that
            results.append(Generated(midi, Score(list(seed_score.notes), seed_score.bpm), continuation, tokens,
                                     random_seed, data, self.style.name))
        return results

    def continuation_writer(self, request: GenerationRequest, target: Controls, sounding: dict[int, int],
                            heard: tuple[np.ndarray, float] | None = None) -> PhraseWriter:
        """The writer of a continuation keeping ``target`` (``controls``), its seed's key and loudness held, and its
        pitch classes near the seed's (``heard``: ``balance``)."""
        target = target if self.checkpoint.model_config.control_size else None
        writer = PhraseWriter(self.sampler, target, request.repetition, self.held_key(target),
                              self.held_loudness(target), sounding)
        return self.steered(writer, request, heard)

    def steered(self, writer: PhraseWriter, request: GenerationRequest,
                heard: tuple[np.ndarray, float] | None = None) -> PhraseWriter:
        """``writer`` with the style's texture (``Style.duration_lift``, ``chord_lift``) and register offset, and a
        key the request names held harder (``NAMED_KEY_BIAS``), its pitch classes held near that key's ``balance``
        and no duration taking over (``Steering.vary``): asked for a named key the model hammers its tonic and fifth
        in one rhythm (60 s pieces: the two took 0.63 of the time on average and up to 0.83, the commonest duration
        0.72 of the notes; held, 0.42, 0.52 and 0.48). A continuation in the seed's key is held near a ``balance``
        with the seed's own profile (``heard``) in it. Its notes stay within the pitches the instrument sounds at
        through the request's soundfont (``sounding_range``)."""
        writer.pitch_range = self.sounding_range(request)
        named = request.key not in ("auto", "free")
        if writer.target is not None and (named or heard is not None):
            writer.balance = self.balance(request, writer.target, heard)
        if named and writer.target is not None:
            writer.key_weight, writer.vary_durations = NAMED_KEY_BIAS, True
        writer.texture = self.texture
        writer.register_offset = self.style.register_offset
        return writer

    def sounding_range(self, request: GenerationRequest) -> tuple[int, int] | None:
        """The lowest and highest of the model's pitches that ``request``'s instrument (None: the style's) sounds at
        through its soundfont (``ranges``); None when it sounds at all of them, at none, or FluidSynth is missing."""
        program = self.style.program if request.program is None else request.program
        try:
            span = ranges.sounding(request.soundfont, program)
        except RenderUnavailable:
            return None
        config = self.tokenizer.config
        if span is None or span[0] > config.pitch_max or span[1] < config.pitch_min:
            return None
        low, high = max(span[0], config.pitch_min), min(span[1], config.pitch_max)
        return None if (low, high) == (config.pitch_min, config.pitch_max) else (low, high)

    def balance(self, request: GenerationRequest, target: Controls,
                heard: tuple[np.ndarray, float] | None = None) -> np.ndarray | None:
        """The pitch-class profile a writer keeping ``target`` holds the music near (``Steering.balance``): how the
        training pieces in its key sound (``ControlLevels.typical_profile``), with ``NAMED_CLARITY`` of the key's
        clear profile in it when the request names the key, or else the seed's own profile (``heard``: it and its
        share; without it, none) so that a continuation keeps the seed's colour of its key (key scores after
        150-note seeds: renaissance 0.77 to 1.27, game piano 1.42 to 1.54); None without a key."""
        if target.profile is None:
            return None
        typical = np.asarray(self.levels.typical_profile(estimate_key(np.asarray(target.profile))))
        if request.key in ("auto", "free"):
            if heard is None:
                return typical
            profile, share = heard
            return (1 - share) * typical + share * profile
        return (1 - NAMED_CLARITY) * typical + NAMED_CLARITY * np.asarray(target.profile)

    def scratch_writer(self, request: GenerationRequest, random_seed: int) -> tuple[PhraseWriter, list[int]]:
        """The writer of a piece from scratch that keeps the ``character`` of a training piece, and its opening
        tokens: that piece's loudness. Its key is kept through the profile given to the model; only a key named
        is held by the writer's bias too (holding the character's key that way made the music poorer in pitch)."""
        target = self.character(request, random_seed)
        opening = [] if target.mean_velocity is None else [self.tokenizer.vocab.encode(
            "VELOCITY", self.tokenizer.velocity_level(round(target.mean_velocity)))]
        key = self.held_key(target) if request.key != "auto" else None
        return self.steered(PhraseWriter(self.sampler, target, request.repetition, key), request), opening

    def _from_scratch(self, request: GenerationRequest, prompt: list[int], sampling: SamplingSettings,
                      random_seed: int) -> list[int]:
        """A piece from scratch, written like a continuation (``scratch_writer``)."""
        writer, opening = self.scratch_writer(request, random_seed)
        rest = replace(sampling, max_tokens=max(sampling.max_tokens - len(opening), 1))
        return opening + writer.write(prompt + opening, rest, random_seed, 0)

    def played(self, sounding: dict[int, int]) -> dict[int, int]:
        """The velocity each level plays at: as ``sounding`` (a seed's ``level_velocities``) says, else as the
        training pieces play it (``ControlLevels.loudness``), else the level's middle (``Tokenizer.tokens_to_score``).
        The writer steers on ``sounding`` alone, as the model was trained on levels' middles."""
        return {**self.level_loudness, **sounding}

    @staticmethod
    def heard(score: Score) -> tuple[np.ndarray, float] | None:
        """A seed's pitch-class profile (weighted by duration) and its share in ``balance``: ``SEED_BALANCE``, less
        for a seed of fewer than ``SEED_BALANCE_NOTES`` notes, whose few pitch classes would otherwise crowd out the
        rest (a one-note seed's continuations: the two commonest pitch classes took 0.63 of the time, against
        0.38 without it); None without notes."""
        if not score.notes:
            return None
        return score_profile(score), SEED_BALANCE * min(1.0, len(score.notes) / SEED_BALANCE_NOTES)

    @staticmethod
    def held_key(target: Controls | None) -> int | None:
        """The key the writer holds (``phrases.key_bias``; 0-11 major, 12-23 minor): that of the profile the model
        is given (the seed's estimated key, or the key named); none with ``free``, or for weights without
        controls."""
        return None if target is None or target.profile is None else estimate_key(np.asarray(target.profile))

    def held_loudness(self, target: Controls | None) -> int | None:
        """The velocity level a continuation holds (``phrases.loudness_bias``): its seed's. From scratch none is
        held: the character's loudness is given to the model, and the music may move around it as pieces do."""
        if target is None or target.mean_velocity is None:
            return None
        return self.tokenizer.velocity_level(round(target.mean_velocity))

    @staticmethod
    def _each_variation(variations: int, write) -> list[list[int]]:
        """``write(row)`` for every variation, side by side on the cores."""
        if variations == 1:
            return [write(0)]
        with ThreadPoolExecutor(min(variations, usable_cores()), thread_name_prefix="midigen-write") as pool:
            return list(pool.map(write, range(variations)))

    def sample_tempo(self, random_seed: int) -> float:
        """The model's own choice of tempo for a piece started from scratch."""
        tokens = self.sampler.sample([BOS], SamplingSettings(max_tokens=1), 1, random_seed)[0]
        kind, level = self.tokenizer.vocab.decode(tokens[0]) if tokens else ("", 0)
        return self.tokenizer.bin_tempo(level) if kind == "TEMPO" else DEFAULT_BPM

    def _sampling(self, request: GenerationRequest, position: int, bpm: float,
                  steps: int | None = None) -> SamplingSettings:
        """Sampling limits for ``request`` after grid step ``position``: its notes, or its seconds as grid steps at
        ``bpm`` (or ``steps``, counted under a tempo map)."""
        if request.notes is not None:
            return SamplingSettings(request.temperature, request.top_p, max_notes=request.notes,
                                    max_tokens=request.notes * TOKENS_PER_NOTE + 64)
        steps_per_second = self.tokenizer.config.steps_per_beat * bpm / 60.0
        return SamplingSettings(
            request.temperature, request.top_p, max_notes=2**31 - 1,
            max_steps=position + (steps or max(1, round(request.seconds * steps_per_second))),
            max_tokens=math.ceil(request.seconds * TOKENS_PER_SECOND) + 64,
        )


def shift_to_zero(score: Score) -> Score:
    """The same notes moved so the first starts at step 0."""
    if not score.notes:
        return score
    first = score.notes[0].start
    return Score([Note(n.pitch, n.start - first, n.duration, n.velocity) for n in score.notes], score.bpm)

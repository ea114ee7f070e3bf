"""MIDI <-> token sequences of notes and chords with time offsets.

A piece becomes a ``Score``: a tempo plus notes on a musical grid of
``steps_per_beat`` steps per quarter note (12 by default, so 16ths and triplets
are exact). Notes that share an onset form a chord. The token stream is::

    BOS TEMPO (SHIFT* (VELOCITY? PITCH DURATION)+)* EOS

* ``SHIFT_s`` moves the onset forward by ``s`` steps (the offset of the next
  element after the previous onset); long rests are spelled as several shifts.
* ``VELOCITY_v`` sets the loudness level for the notes that follow; it is only
  written when the level changes.
* ``PITCH_p DURATION_d`` is one note of the chord at the current onset, with its
  absolute pitch (octave included) and its length in steps. Chord notes are
  written from low to high.

Index layout (``Vocabulary`` ranges, in this order, PAD = 0)::

    PAD BOS EOS | TEMPO x tempo_bins | VELOCITY x velocity_levels |
    SHIFT 1..max_shift | PITCH pitch_min..pitch_max | DURATION 1..max_duration
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import asdict, dataclass, field

import pretty_midi

SPECIAL_TOKENS = ("PAD", "BOS", "EOS")
PAD, BOS, EOS = 0, 1, 2
DEFAULT_BPM = 120.0
DEFAULT_VELOCITY = 80
OUTPUT_TICKS_PER_BEAT = 480
# Bump whenever the tokens written for the same config change: token caches made before are then tokenized again.
TOKENIZER_VERSION = 1


@dataclass(frozen=True)
class TokenizerConfig:
    """Grid and vocabulary sizes; saved next to the model weights."""

    steps_per_beat: int = 12
    max_shift: int = 48
    max_duration: int = 96
    pitch_min: int = 21
    pitch_max: int = 108
    velocity_levels: int = 8
    tempo_bins: int = 32
    tempo_min: float = 40.0
    tempo_max: float = 240.0

    def __post_init__(self):
        if self.steps_per_beat < 1 or self.max_shift < 1 or self.max_duration < 1:
            raise ValueError("grid sizes must be positive")
        if not 0 <= self.pitch_min <= self.pitch_max <= 127 or self.pitch_max - self.pitch_min < 11:
            raise ValueError("pitch range must lie in 0..127 and span an octave")
        if not 1 <= self.velocity_levels <= 127 or self.tempo_bins < 1:
            raise ValueError("velocity_levels and tempo_bins must be positive")
        if not 0 < self.tempo_min < self.tempo_max:
            raise ValueError("tempo range must be positive and increasing")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TokenizerConfig:
        return cls(**data)


@dataclass(frozen=True)
class Note:
    """One note on the grid: onset and duration in steps, MIDI pitch and velocity."""

    pitch: int
    start: int
    duration: int
    velocity: int = DEFAULT_VELOCITY

    def __post_init__(self):
        if not 0 <= self.pitch <= 127 or not 1 <= self.velocity <= 127:
            raise ValueError(f"pitch and velocity must be MIDI values: {self}")
        if self.start < 0 or self.duration < 1:
            raise ValueError(f"start must be >= 0 and duration >= 1 step: {self}")


@dataclass
class Score:
    """A quantized piano part: notes sorted by (start, pitch) and one tempo."""

    notes: list[Note] = field(default_factory=list)
    bpm: float = DEFAULT_BPM

    def __repr__(self) -> str:
        return f"Score({len(self.notes)} notes, bpm={self.bpm:.1f})"


class Vocabulary:
    """Maps token kinds and values to indices by offset arithmetic."""

    def __init__(self, config: TokenizerConfig):
        self.config = config
        sizes = {
            "TEMPO": config.tempo_bins,
            "VELOCITY": config.velocity_levels,
            "SHIFT": config.max_shift,
            "PITCH": config.pitch_max - config.pitch_min + 1,
            "DURATION": config.max_duration,
        }
        self.first_value = {
            "TEMPO": 0,
            "VELOCITY": 0,
            "SHIFT": 1,
            "PITCH": config.pitch_min,
            "DURATION": 1,
        }
        self.offset = {}
        index = len(SPECIAL_TOKENS)
        for kind, size in sizes.items():
            self.offset[kind] = index
            index += size
        self.sizes = sizes
        self.size = index

    def __len__(self) -> int:
        return self.size

    def encode(self, kind: str, value: int) -> int:
        """Index of token ``kind`` with ``value``; raises if out of range."""
        position = value - self.first_value[kind]
        if not 0 <= position < self.sizes[kind]:
            raise ValueError(f"{kind} value {value} outside the vocabulary")
        return self.offset[kind] + position

    def decode(self, index: int) -> tuple[str, int]:
        """(kind, value) of a token index; raises on an unknown index."""
        if 0 <= index < len(SPECIAL_TOKENS):
            return SPECIAL_TOKENS[index], 0
        for kind, start in self.offset.items():
            if start <= index < start + self.sizes[kind]:
                return kind, index - start + self.first_value[kind]
        raise ValueError(f"token {index} outside a vocabulary of {self.size}")

    def kind_ranges(self) -> dict[str, range]:
        """Index range of each token kind."""
        return {kind: range(start, start + self.sizes[kind]) for kind, start in self.offset.items()}

    def token_name(self, index: int) -> str:
        kind, value = self.decode(index)
        return kind if kind in SPECIAL_TOKENS else f"{kind}_{value}"


class Tokenizer:
    """Converts between MIDI (pretty_midi), quantized scores and token ids."""

    def __init__(self, config: TokenizerConfig | None = None):
        self.config = config or TokenizerConfig()
        self.vocab = Vocabulary(self.config)

    def __repr__(self) -> str:
        return f"Tokenizer({self.config}, vocab_size={len(self.vocab)})"

    # -- value quantizers -------------------------------------------------
    def tempo_bin(self, bpm: float) -> int:
        c = self.config
        bpm = min(max(bpm, c.tempo_min), c.tempo_max)
        position = math.log(bpm / c.tempo_min) / math.log(c.tempo_max / c.tempo_min)
        return round(position * (c.tempo_bins - 1))

    def bin_tempo(self, level: int) -> float:
        c = self.config
        if c.tempo_bins == 1:
            return c.tempo_min
        return c.tempo_min * (c.tempo_max / c.tempo_min) ** (level / (c.tempo_bins - 1))

    def velocity_level(self, velocity: int) -> int:
        return min(velocity * self.config.velocity_levels // 128, self.config.velocity_levels - 1)

    def level_velocity(self, level: int) -> int:
        width = 128 / self.config.velocity_levels
        return max(1, min(127, round((level + 0.5) * width)))

    def fold_pitch(self, pitch: int) -> int:
        """Move a pitch by octaves into the vocabulary's range."""
        while pitch < self.config.pitch_min:
            pitch += 12
        while pitch > self.config.pitch_max:
            pitch -= 12
        return pitch

    # -- MIDI <-> score ---------------------------------------------------
    def midi_to_score(self, midi: pretty_midi.PrettyMIDI) -> Score:
        """Merge all non-drum tracks into one quantized part.

        Notes last as long as they sound (``sounding_notes``: the sustain pedal holds them), onsets
        are rounded to the grid, durations are at least one step and at most ``max_duration``,
        pitches are folded into range, and presses of one key merge as on a piano (``piano_notes``).
        """
        steps = self.config.steps_per_beat / midi.resolution
        presses = []
        for pitch, start_time, end_time, velocity in sounding_notes(midi):
            start_tick = midi.time_to_tick(start_time)
            start = round(start_tick * steps)
            duration = round((midi.time_to_tick(end_time) - start_tick) * steps)
            presses.append((self.fold_pitch(pitch), start, min(max(duration, 1), self.config.max_duration),
                            min(max(velocity, 1), 127)))
        notes = [Note(*note) for note in piano_notes(presses)]
        return Score(notes, piece_tempo(midi))

    def score_to_midi(self, score: Score, program: int = 0, bpm: float | None = None) -> pretty_midi.PrettyMIDI:
        """A one-track MIDI of the score at ``bpm`` (default: the score's)."""
        bpm = float(bpm or score.bpm)
        midi = pretty_midi.PrettyMIDI(resolution=OUTPUT_TICKS_PER_BEAT, initial_tempo=bpm)
        instrument = pretty_midi.Instrument(program=program, name=pretty_midi.program_to_instrument_name(program))
        seconds_per_step = 60.0 / bpm / self.config.steps_per_beat
        for note in score.notes:
            start = note.start * seconds_per_step
            end = (note.start + note.duration) * seconds_per_step
            instrument.notes.append(pretty_midi.Note(note.velocity, note.pitch, start, end))
        midi.instruments.append(instrument)
        return midi

    # -- score <-> tokens -------------------------------------------------
    def score_to_tokens(self, score: Score, add_eos: bool = True) -> list[int]:
        v = self.vocab
        tokens = [BOS, v.encode("TEMPO", self.tempo_bin(score.bpm))]
        position, level = 0, None
        for note in sorted(score.notes, key=lambda n: (n.start, n.pitch)):
            gap = note.start - position
            while gap > 0:
                shift = min(gap, self.config.max_shift)
                tokens.append(v.encode("SHIFT", shift))
                gap -= shift
            position = note.start
            note_level = self.velocity_level(note.velocity)
            if note_level != level:
                tokens.append(v.encode("VELOCITY", note_level))
                level = note_level
            tokens.append(v.encode("PITCH", self.fold_pitch(note.pitch)))
            tokens.append(v.encode("DURATION", min(note.duration, self.config.max_duration)))
        if add_eos:
            tokens.append(EOS)
        return tokens

    def tokens_to_score(self, tokens, bpm: float | None = None, velocities: dict[int, int] | None = None) -> Score:
        """Decode any token sequence into a valid score.

        A velocity level plays at the middle of its band, or at ``velocities[level]`` when given (a
        continuation plays each level as loud as its seed did: ``level_velocities``).

        Tolerant: unknown ids, stray durations and repeated tempo tokens are
        ignored; a pitch without a duration gets one beat; decoding stops at
        EOS; presses of one key merge as on a piano (``piano_notes``).
        """
        v = self.vocab
        position = 0
        velocity = DEFAULT_VELOCITY
        tempo = None
        pending_pitch = None
        presses = []

        def close(pitch, duration):
            presses.append((pitch, position, duration, velocity))

        for index in tokens:
            try:
                kind, value = v.decode(int(index))
            except ValueError:
                continue
            if kind == "EOS":
                break
            if kind == "DURATION":
                if pending_pitch is not None:
                    close(pending_pitch, value)
                    pending_pitch = None
                continue
            if pending_pitch is not None:
                close(pending_pitch, self.config.steps_per_beat)
                pending_pitch = None
            if kind == "PITCH":
                pending_pitch = value
            elif kind == "SHIFT":
                position += value
            elif kind == "VELOCITY":
                velocity = (velocities or {}).get(value) or self.level_velocity(value)
            elif kind == "TEMPO" and tempo is None:
                tempo = self.bin_tempo(value)
        if pending_pitch is not None:
            close(pending_pitch, self.config.steps_per_beat)
        notes = [Note(*note) for note in piano_notes(presses)]
        return Score(notes, bpm or tempo or DEFAULT_BPM)

    def level_velocities(self, score: Score) -> dict[int, int]:
        """The mean velocity of the score's notes at each velocity level they use."""
        found: dict[int, list[int]] = {}
        for note in score.notes:
            found.setdefault(self.velocity_level(note.velocity), []).append(note.velocity)
        return {level: round(sum(v) / len(v)) for level, v in found.items()}

    # -- shortcuts --------------------------------------------------------
    def encode(self, midi: pretty_midi.PrettyMIDI, add_eos: bool = True) -> list[int]:
        return self.score_to_tokens(self.midi_to_score(midi), add_eos=add_eos)

    def decode(self, tokens, bpm: float | None = None, program: int = 0) -> pretty_midi.PrettyMIDI:
        return self.score_to_midi(self.tokens_to_score(tokens), program=program, bpm=bpm)

    def count_notes(self, tokens) -> int:
        """Number of PITCH tokens, i.e. notes, in a sequence."""
        pitches = self.vocab.kind_ranges()["PITCH"]
        return sum(1 for t in tokens if t in pitches)


def piano_notes(presses, slot=None) -> list[tuple]:
    """Key presses ``(pitch, start, duration, velocity)`` as a piano sounds them, sorted by (start, pitch).

    Presses of one key in the same grid slot (``slot(start)``, default the start itself) sound as
    one note, the longest; a key pressed again releases the note it was sounding (as MIDI readers
    pair note-offs with note-ons).
    """
    slot = slot or (lambda start: start)
    longest = {}
    for press in presses:
        key = (press[0], slot(press[1]))
        if key not in longest or longest[key][2] < press[2]:
            longest[key] = press
    ordered = sorted(longest.values(), key=lambda p: (p[0], p[1]))
    for i, (pitch, start, duration, velocity) in enumerate(ordered[:-1]):
        following = ordered[i + 1]
        if following[0] == pitch and start + duration > following[1]:
            ordered[i] = (pitch, start, following[1] - start, velocity)
    return sorted(ordered, key=lambda p: (p[1], p[0]))


SUSTAIN_PEDAL = 64


def pedal_intervals(midi: pretty_midi.PrettyMIDI) -> list[tuple[float, float]]:
    """(down, up) times in seconds of the sustain pedal (controller 64, down at values >= 64).

    The part is one piano: the pedal is down while any non-drum track holds it down.
    """
    events = []
    for instrument in midi.instruments:
        if instrument.is_drum:
            continue
        down = False
        for change in sorted(instrument.control_changes, key=lambda c: c.time):
            if change.number != SUSTAIN_PEDAL or (change.value >= 64) == down:
                continue
            down = not down
            events.append((change.time, 1 if down else -1))
        if down:
            events.append((math.inf, -1))
    intervals, held, opened = [], 0, 0.0
    for time, step in sorted(events, key=lambda e: (e[0], -e[1])):
        if held == 0 and step > 0:
            opened = time
        held += step
        if held == 0 and time > opened:
            intervals.append((opened, time))
    return intervals


def sounding_notes(midi: pretty_midi.PrettyMIDI) -> list[tuple[int, float, float, int]]:
    """(pitch, start, end, velocity) in seconds of every non-drum note, ending when it stops sounding.

    A key released while the sustain pedal is down keeps sounding until the pedal lifts or the key is
    struck again (the re-press is applied by ``piano_notes``; here a held note ends at the pedal lift).
    """
    intervals = pedal_intervals(midi)
    downs = [down for down, _ in intervals]
    notes = []
    for instrument in midi.instruments:
        if instrument.is_drum:
            continue
        for note in instrument.notes:
            end = note.end
            i = bisect.bisect_right(downs, end) - 1
            if i >= 0 and end < intervals[i][1]:
                end = intervals[i][1]
                if math.isinf(end):
                    end = max(note.end, midi.get_end_time())
            notes.append((note.pitch, note.start, end, note.velocity))
    return notes


def piece_tempo(midi: pretty_midi.PrettyMIDI) -> float:
    """The tempo that holds for the most beats of the piece (BPM)."""
    times, tempi = midi.get_tempo_changes()
    if len(tempi) == 0:
        return DEFAULT_BPM
    ticks = [midi.time_to_tick(t) for t in times] + [max(midi.time_to_tick(midi.get_end_time()), 1)]
    beats = Counter()
    for i, tempo in enumerate(tempi):
        beats[round(float(tempo), 1)] += max(ticks[i + 1] - ticks[i], 0)
    tempo, span = beats.most_common(1)[0]
    return tempo if span > 0 else float(tempi[0])


def piano_part(midi: pretty_midi.PrettyMIDI, steps_per_beat: int) -> list[tuple[int, float, float]]:
    """(pitch, onset, duration) in beats of the merged non-drum part, as it sounds.

    Notes last until the key or the sustain pedal is released (``sounding_notes``), and presses
    of one key merge as on a piano (``piano_notes``, one grid step per slot), as the tokenizer does.
    """
    presses = []
    for pitch, start_time, end_time, velocity in sounding_notes(midi):
        start = midi.time_to_tick(start_time) / midi.resolution
        presses.append((pitch, start, midi.time_to_tick(end_time) / midi.resolution - start, velocity))
    return [(p, s, d) for p, s, d, _ in piano_notes(presses, slot=lambda start: round(start * steps_per_beat))]


def roundtrip_accuracy(tokenizer: Tokenizer, midi: pretty_midi.PrettyMIDI) -> tuple[int, int]:
    """(matched, total) notes of the piano part that survive encode -> decode
    with exact pitch, and onset and duration within one grid step."""
    steps_per_beat = tokenizer.config.steps_per_beat
    original = piano_part(midi, steps_per_beat)
    decoded = piano_part(tokenizer.decode(tokenizer.encode(midi)), steps_per_beat)
    tolerance = 1.0 / steps_per_beat + 1e-9
    by_key = {(p, round(s * steps_per_beat)): (s, d) for p, s, d in decoded}
    matched = 0
    for pitch, start, duration in original:
        found = by_key.pop((pitch, round(start * steps_per_beat)), None)
        if found and abs(found[0] - start) <= tolerance and abs(found[1] - duration) <= tolerance:
            matched += 1
    return matched, len(original)

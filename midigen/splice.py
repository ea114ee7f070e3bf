"""A seeded piece as the user gets it back: the seed file untouched, then the new music on a track of its own.

The model reads a merged, quantized piano view of the seed (all of it, or its last part); the output
keeps the file itself. Its track chunks, as the loader repaired them (``midi_io.read_midi``: data bytes
above 127 clipped, so that the output is valid MIDI), are copied byte for byte (every track, channel, program,
controller, drum note, tempo and time signature stays where it was) and one track is appended: the
new music, on a channel the seed leaves free, in the seed's ticks. Its grid is the grid the model
read the seed on, so it keeps the seed's final tempo and starts at the seed's last onset or after.
"""

from __future__ import annotations

import copy
import io
import math
import struct
from collections import Counter
from dataclasses import dataclass
from functools import cached_property

import mido
import numpy as np
import pretty_midi

from .midi_io import CheckedMidi, MidiError, MidiLimits, read_midi, read_mido
from .tokenizer import Score

DRUM_CHANNEL = 9
# A seed handed over as a PrettyMIDI object (by library code) is not an upload: no caps but pretty_midi's own.
UNBOUNDED = MidiLimits(max_bytes=1 << 40, max_tracks=65535, max_events=1 << 40, max_notes=1 << 40,
                       max_seconds=float("inf"))


@dataclass(frozen=True)
class Seed:
    """A seed MIDI file and the part of it the model reads.

    ``priming`` is the part the tokenizer reads (None: all of ``file.midi``), moved so that
    ``priming_start`` seconds of the file are its time 0.
    """

    file: CheckedMidi
    priming: pretty_midi.PrettyMIDI | None = None
    priming_start: float = 0.0

    @classmethod
    def from_midi(cls, midi: pretty_midi.PrettyMIDI) -> Seed:
        """The whole of ``midi`` as a seed (the file is what pretty_midi writes for it)."""
        return cls(read_midi(midi_bytes(midi), UNBOUNDED))

    @property
    def primed(self) -> pretty_midi.PrettyMIDI:
        return self.file.midi if self.priming is None else self.priming

    @cached_property
    def last_onset(self) -> float:
        """Seconds of the last onset the model reads (drums are not read): where the new music starts."""
        return max((n.start for i in self.file.midi.instruments if not i.is_drum for n in i.notes), default=0.0)

    @cached_property
    def bpm(self) -> float:
        """The seed's final tempo, which the new music keeps."""
        return float(self.file.midi.get_tempo_changes()[1][-1])

    def steps_after(self, seconds: float, steps_per_beat: int) -> int:
        """Grid steps in ``seconds`` of music after the last onset, under the seed's tempo map (its last tempo
        holding on past its end), so that new music asked for in seconds lasts them whatever the map does."""
        midi = self.file.midi
        ticks = midi.time_to_tick(self.last_onset + seconds) - midi.time_to_tick(self.last_onset)
        return max(1, round(ticks * steps_per_beat / midi.resolution))

    @cached_property
    def note_count(self) -> int:
        return sum(len(instrument.notes) for instrument in self.file.midi.instruments)


def splice(seed: Seed, continuation: Score, steps_per_beat: int, program: int) -> tuple[pretty_midi.PrettyMIDI, bytes]:
    """The seed file with ``continuation`` appended as a track playing ``program``.

    ``continuation`` is on the model's grid: step 0 is ``seed.priming_start``, ``steps_per_beat`` steps per
    beat. Notes on the step of the seed's last onset start exactly with it (the seed's timing need not be on
    the grid); later ones start on their grid step. Returns ``(midi, data)``: ``data`` is the file;
    ``midi`` is what it plays, the seed's instruments (shared with ``seed.file.midi``, not copied) and the
    new music last, in seconds.
    """
    seed_midi = seed.file.midi
    origin = seed_midi.time_to_tick(seed.priming_start)
    last_onset = seed_midi.time_to_tick(seed.last_onset)
    ticks_per_step = seed_midi.resolution / steps_per_beat
    notes = []
    for note in continuation.notes:
        start = max(origin + round(note.start * ticks_per_step), last_onset)
        end = max(origin + round((note.start + note.duration) * ticks_per_step), start + 1)
        notes.append((start, end, note.pitch, note.velocity))
    name = pretty_midi.program_to_instrument_name(program)
    channel = _free_channel(seed.file.channels)
    program_tick = 0 if channel not in seed.file.channels else min((n[0] for n in notes), default=last_onset)
    data = _append_track(seed.file.data, _track(notes, channel, program, program_tick, name))
    instrument = pretty_midi.Instrument(program=program, name=name)
    starts, ends = (_seconds(seed_midi, np.array([n[i] for n in notes], dtype=np.int64)) for i in (0, 1))
    for (_, _, pitch, velocity), start, end in zip(notes, starts, ends, strict=True):
        instrument.notes.append(pretty_midi.Note(velocity, pitch, float(start), float(end)))
    midi = copy.copy(seed_midi)
    midi.instruments = [*seed_midi.instruments, instrument]
    return midi, data


def excerpt(midi: pretty_midi.PrettyMIDI, start: float, max_held: int | None = None) -> pretty_midi.PrettyMIDI:
    """``midi`` from ``start`` seconds on, moved to begin at 0, as a player started there sounds it: notes
    still held at ``start`` sound from 0 (at most ``max_held`` of them, the last pressed), and every
    controller (the sustain pedal, say) and the pitch bend begin at the value they had. Instruments keep
    their order, programs and names."""
    if start <= 0:
        return midi
    held = sorted((n.start for instrument in midi.instruments for n in instrument.notes if n.start < start < n.end),
                  reverse=True)
    earliest = held[max_held - 1] if max_held is not None and len(held) > max_held else -math.inf
    out = pretty_midi.PrettyMIDI(resolution=midi.resolution)
    for instrument in midi.instruments:
        part = pretty_midi.Instrument(instrument.program, instrument.is_drum, instrument.name)
        part.notes = [pretty_midi.Note(n.velocity, n.pitch, max(n.start - start, 0.0), n.end - start)
                      for n in instrument.notes if n.end > start and n.start >= earliest]
        part.control_changes = _chase(instrument.control_changes, start, lambda c: c.number,
                                      lambda c, t: pretty_midi.ControlChange(c.number, c.value, t))
        part.pitch_bends = _chase(instrument.pitch_bends, start, lambda b: 0,
                                  lambda b, t: pretty_midi.PitchBend(b.pitch, t))
        out.instruments.append(part)
    return out


def midi_bytes(midi: pretty_midi.PrettyMIDI) -> bytes:
    """The file pretty_midi writes for ``midi``."""
    buffer = io.BytesIO()
    midi.write(buffer)
    return buffer.getvalue()


def _chase(events: list, start: float, kind, make) -> list:
    """Events from ``start`` on, shifted by ``-start``, after the last value of each kind set before it (at 0)."""
    ordered = sorted(events, key=lambda e: e.time)
    state = {kind(e): e for e in ordered if e.time < start}
    return [make(e, 0.0) for e in state.values()] + [make(e, e.time - start) for e in ordered if e.time >= start]


def _free_channel(used: frozenset[int]) -> int:
    """The first melodic channel the seed does not use (the last one when it uses them all)."""
    melodic = [channel for channel in range(16) if channel != DRUM_CHANNEL]
    return next((channel for channel in melodic if channel not in used), melodic[-1])


def _track(notes: list[tuple[int, int, int, int]], channel: int, program: int, program_tick: int,
           name: str) -> mido.MidiTrack:
    """One track: its name, the program change, then ``(start, end, pitch, velocity)`` notes (in ticks)."""
    events = [(0, 0, mido.MetaMessage("track_name", name=name)),
              (program_tick, 1, mido.Message("program_change", channel=channel, program=program))]
    for start, end, pitch, velocity in notes:
        # at equal ticks note-offs come before note-ons, so a re-pressed key stays two notes
        events.append((start, 3, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)))
        events.append((end, 2, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
    events.sort(key=lambda event: event[:2])
    track, now = mido.MidiTrack(), 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def _append_track(data: bytes, track: mido.MidiTrack) -> bytes:
    """The MIDI file ``data`` (a header, then track chunks) with ``track`` added as its last track."""
    _, ntracks, division = struct.unpack_from(">HHH", data, 8)
    buffer = io.BytesIO()
    mido.MidiFile(type=1, ticks_per_beat=division, tracks=[track]).save(file=buffer)
    header = b"MThd" + struct.pack(">IHHH", 6, 1, ntracks + 1, division)  # one track (type 0) becomes type 1
    return header + data[14:] + buffer.getvalue()[14:]


def _seconds(midi: pretty_midi.PrettyMIDI, ticks: np.ndarray) -> np.ndarray:
    """Seconds of ``ticks`` under ``midi``'s tempo map, its last tempo holding on past its end."""
    times, bpms = midi.get_tempo_changes()
    change_ticks = np.array([midi.time_to_tick(t) for t in times], dtype=np.int64)
    index = np.searchsorted(change_ticks, ticks, side="right") - 1
    return times[index] + (ticks - change_ticks[index]) * (60.0 / (bpms[index] * midi.resolution))


def cut(seed: CheckedMidi, seconds: float) -> CheckedMidi:
    """The seed file up to ``seconds``, for regenerating from there: every note that starts before then,
    with its whole length, and every other event before then; nothing that starts later."""
    end = seed.midi.time_to_tick(seconds)
    if not any(note.start < seconds for instrument in seed.midi.instruments for note in instrument.notes):
        raise MidiError(f"There are no notes before {seconds:g} s to keep.")
    source = read_mido(seed.data)
    # a type 0 file with several tracks (which the loader reads) is saved as what it is: type 1
    kept = mido.MidiFile(type=1 if len(source.tracks) > 1 else source.type, ticks_per_beat=source.ticks_per_beat)
    for track in source.tracks:
        events, held, now = [], Counter(), 0
        for message in track:
            now += message.time
            key = (getattr(message, "channel", None), getattr(message, "note", None))
            if message.type == "note_on" and message.velocity > 0:
                if now < end:
                    held[key] += 1
                    events.append((now, message))
            elif message.type in ("note_on", "note_off"):
                if held[key]:  # the release of a kept note, wherever it falls
                    held[key] -= 1
                    events.append((now, message))
            elif now < end and message.type != "end_of_track":
                events.append((now, message))
        out, previous = mido.MidiTrack(), 0
        for tick, message in events:
            out.append(message.copy(time=tick - previous))
            previous = tick
        out.append(mido.MetaMessage("end_of_track", time=0))
        kept.tracks.append(out)
    buffer = io.BytesIO()
    kept.save(file=buffer)
    return read_midi(buffer.getvalue(), UNBOUNDED)

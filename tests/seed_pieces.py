"""Seeds like the ones users bring, built in code: a recorded performance, a band arrangement, a long piece.

Each builder returns the bytes of a MIDI file written with mido (exact ticks, every event kind), plus
helpers that read back what a file holds, to check that an output keeps a seed exactly.
"""

from __future__ import annotations

import io
import random
import struct
from dataclasses import dataclass

import mido
import pretty_midi
from helpers import mido_track

SUSTAIN = 64


def _save(file: mido.MidiFile) -> bytes:
    buffer = io.BytesIO()
    file.save(file=buffer)
    return buffer.getvalue()


def _note(events, channel: int, pitch: int, on: int, off: int, velocity: int, off_kind: str = "note_off") -> None:
    events.append((on, 2, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)))
    if off_kind == "note_off":
        events.append((off, 1, mido.Message("note_off", channel=channel, note=pitch, velocity=64)))
    else:  # a note-on with velocity 0, as many recorders write it
        events.append((off, 1, mido.Message("note_on", channel=channel, note=pitch, velocity=0)))


def performance(seconds: float = 40.0, random_seed: int = 1, resolution: int = 960, bpm: float = 120.0) -> bytes:
    """A recorded solo-piano performance (format 0): free timing, about 90 velocities, the sustain pedal
    pressed and lifted (with half-pedal values) every bar or two, the soft pedal now and then, and keys
    struck again while the pedal holds them."""
    rng = random.Random(random_seed)
    ticks_per_second = resolution * bpm / 60
    events = [(0, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))),
              (0, 0, mido.MetaMessage("time_signature", numerator=4, denominator=4)),
              (0, 0, mido.Message("program_change", channel=0, program=0))]
    now, end = 0.3, seconds - 1.0
    while now < end:
        chord = rng.random() < 0.3
        root = rng.randint(36, 84)
        for pitch in ([root, root + rng.choice((3, 4)), root + 7] if chord else [root]):
            length = rng.uniform(0.08, 0.9)
            on = round((now + rng.uniform(0, 0.015)) * ticks_per_second)
            off = round((now + length) * ticks_per_second)
            _note(events, 0, pitch, on, max(off, on + 1), rng.randint(22, 112), rng.choice(("note_off", "zero")))
        now += rng.uniform(0.09, 0.45)
    pedal = 0.5
    while pedal < seconds - 0.5:
        down = round(pedal * ticks_per_second)
        events.append((down, 0, mido.Message("control_change", channel=0, control=SUSTAIN,
                                              value=rng.choice((127, 127, 100, 80)))))
        for step in range(rng.randint(0, 3)):  # a recorded pedal moves through values
            tick = down + round((0.2 + 0.1 * step) * ticks_per_second)
            events.append((tick, 0, mido.Message("control_change", channel=0, control=SUSTAIN,
                                                  value=rng.randint(64, 127))))
        pedal += rng.uniform(1.0, 3.0)
        events.append((round((pedal - 0.05) * ticks_per_second), 0,
                       mido.Message("control_change", channel=0, control=SUSTAIN, value=0)))
        if rng.random() < 0.2:
            events.append((down, 0, mido.Message("control_change", channel=0, control=67, value=127)))
            events.append((round(pedal * ticks_per_second), 0,
                           mido.Message("control_change", channel=0, control=67, value=0)))
    file = mido.MidiFile(type=0, ticks_per_beat=resolution)
    file.tracks.append(mido_track(events))
    return _save(file)


def band(bars: int = 12, random_seed: int = 2, resolution: int = 480) -> bytes:
    """A pop arrangement (format 1): a conductor track with tempo, time-signature and key changes, nine
    instrument tracks on their own channels with programs (one changing mid-song), volume, pan,
    expression and modulation controllers, a sustain pedal on the piano, pitch bends, and drums on
    channel 10."""
    rng = random.Random(random_seed)
    bar = 4 * resolution
    end = bars * bar
    conductor = [(0, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(96))),
                 (0, 0, mido.MetaMessage("time_signature", numerator=4, denominator=4)),
                 (0, 0, mido.MetaMessage("key_signature", key="G")),
                 (4 * bar, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(104))),
                 (8 * bar, 0, mido.MetaMessage("time_signature", numerator=3, denominator=4)),
                 (8 * bar, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(100)))]
    file = mido.MidiFile(type=1, ticks_per_beat=resolution)
    file.tracks.append(mido_track(conductor, "Song"))
    parts = [("Piano", 0, 0, (60, 84), 240), ("Bass", 1, 33, (28, 48), 480), ("Strings", 2, 48, (55, 79), 960),
             ("Guitar", 3, 25, (52, 76), 240), ("Pad", 4, 89, (48, 72), 1920), ("Lead", 5, 80, (67, 91), 120),
             ("Brass", 6, 61, (55, 79), 480), ("Organ", 7, 16, (48, 72), 960), ("Choir", 8, 52, (60, 79), 1920)]
    for name, channel, program, (low, high), step in parts:
        events = [(0, 0, mido.Message("program_change", channel=channel, program=program)),
                  (0, 0, mido.Message("control_change", channel=channel, control=7, value=rng.randint(70, 110))),
                  (0, 0, mido.Message("control_change", channel=channel, control=10, value=rng.randint(20, 108)))]
        if name == "Strings":  # switches to tremolo strings halfway
            events.append((6 * bar, 0, mido.Message("program_change", channel=channel, program=44)))
        for tick in range(0, end, step):
            on = tick + rng.randint(0, 12)
            _note(events, channel, rng.randint(low, high), on, on + step - rng.randint(10, 60), rng.randint(40, 120))
        if name == "Piano":
            for tick in range(0, end, bar):
                events += [(tick + 10, 0, mido.Message("control_change", channel=channel, control=SUSTAIN, value=127)),
                           (tick + bar - 20, 0, mido.Message("control_change", channel=channel, control=SUSTAIN,
                                                             value=0))]
        if name == "Guitar":
            for tick in range(bar, end, bar):
                events += [(tick + 60, 0, mido.Message("pitchwheel", channel=channel, pitch=rng.randint(-4000, 4000))),
                           (tick + 300, 0, mido.Message("pitchwheel", channel=channel, pitch=0))]
        if name in ("Pad", "Lead"):
            events += [(tick, 0, mido.Message("control_change", channel=channel, control=11 if name == "Pad" else 1,
                                              value=rng.randint(0, 127))) for tick in range(0, end, resolution)]
        file.tracks.append(mido_track(events, name))
    drums = []
    for tick in range(0, end, resolution // 2):
        _note(drums, 9, 42, tick, tick + 30, rng.randint(50, 90))  # hi-hat eighths
        if tick % resolution == 0:
            _note(drums, 9, 36 if (tick // resolution) % 2 == 0 else 38, tick, tick + 60, rng.randint(90, 127))
    file.tracks.append(mido_track(drums, "Drums"))
    return _save(file)


# A program, a controller value and a velocity above 127, as some real-world files have (strict readers refuse
# them), and what tolerant readers (mido's clip) read them as.
OUT_OF_RANGE = (0x80, 0xFF, 0x9C)
CLIPPED = (0x7F, 0x7F, 0x7F)


def with_raw_track(data: bytes, program: int, pan: int, velocity: int) -> bytes:
    """``data`` (a type-1 file) with a track appended on channel 5: ``program``, the pan controller at ``pan`` and
    two notes (the first at ``velocity``), each written as the raw data byte given, whatever its range."""
    body = bytes([0, 0xC5, program, 0, 0xB5, 10, pan, 0, 0x95, 60, velocity, 0x83, 0x60, 0x85, 60, 0,
                  0, 0x95, 64, 80, 0x83, 0x60, 0x85, 64, 0, 0, 0xFF, 0x2F, 0])
    ntracks = struct.unpack_from(">H", data, 10)[0]
    return data[:10] + struct.pack(">H", ntracks + 1) + data[12:] + b"MTrk" + struct.pack(">I", len(body)) + body


def read_strictly(data: bytes) -> pretty_midi.PrettyMIDI:
    """What standard readers see in ``data``: mido without ``clip`` must read it, then pretty_midi."""
    mido.MidiFile(file=io.BytesIO(data))
    return pretty_midi.PrettyMIDI(io.BytesIO(data))


def long_piece(notes: int = 1400, seconds: float = 150.0, random_seed: int = 3) -> bytes:
    """Longer than the app primes the model with (1,000 notes / 90 s): a two-track piano piece with pedal."""
    rng = random.Random(random_seed)
    resolution, bpm = 480, 100.0
    ticks_per_second = resolution * bpm / 60
    step = seconds / notes
    hands = [[(0, 0, mido.Message("program_change", channel=c, program=0))] for c in (0, 1)]
    for index in range(notes):
        hand = index % 2
        on = round((0.1 + index * step) * ticks_per_second) + rng.randint(-5, 5)
        pitch = rng.randint(60, 88) if hand == 0 else rng.randint(33, 59)
        _note(hands[hand], hand, pitch, max(on, 0), max(on, 0) + rng.randint(60, 400), rng.randint(30, 110))
    for tick in range(0, round(seconds * ticks_per_second), 4 * resolution):
        hands[0] += [(tick, 0, mido.Message("control_change", channel=0, control=SUSTAIN, value=127)),
                     (tick + 3 * resolution, 0, mido.Message("control_change", channel=0, control=SUSTAIN, value=0))]
    file = mido.MidiFile(type=1, ticks_per_beat=resolution)
    file.tracks.append(mido_track([(0, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))], "Tempo"))
    file.tracks += [mido_track(events, name) for events, name in zip(hands, ("Right hand", "Left hand"), strict=True)]
    return _save(file)


# -- what a file holds ---------------------------------------------------------------------------


@dataclass
class Contents:
    """Everything pretty_midi reads in a file, as comparable tuples (times in seconds)."""

    notes: list[tuple]  # (program, is_drum, pitch, velocity, start, end)
    controls: list[tuple]  # (program, number, value, time)
    bends: list[tuple]  # (program, pitch, time)
    tempi: list[tuple]  # (time, bpm)
    time_signatures: list[tuple]  # (numerator, denominator, time)


def contents(data: bytes | pretty_midi.PrettyMIDI) -> Contents:
    midi = data if isinstance(data, pretty_midi.PrettyMIDI) else pretty_midi.PrettyMIDI(io.BytesIO(data))
    notes, controls, bends = [], [], []
    for i in midi.instruments:
        notes += [(i.program, i.is_drum, n.pitch, n.velocity, n.start, n.end) for n in i.notes]
        controls += [(i.program, c.number, c.value, c.time) for c in i.control_changes]
        bends += [(i.program, b.pitch, b.time) for b in i.pitch_bends]
    times, bpms = midi.get_tempo_changes()
    return Contents(sorted(notes), sorted(controls), sorted(bends), list(zip(times, bpms, strict=True)),
                    [(t.numerator, t.denominator, t.time) for t in midi.time_signature_changes])


def missing(expected: list[tuple], actual: list[tuple], tolerance: float = 1e-3) -> list[tuple]:
    """Items of ``expected`` with no match in ``actual``: equal in all fields, times (floats) within
    ``tolerance`` seconds. Each item of ``actual`` matches at most once."""
    pool: dict[tuple, list[tuple]] = {}
    for item in actual:
        pool.setdefault(_exact(item), []).append(item)
    absent = []
    for item in expected:
        candidates = pool.get(_exact(item), [])
        match = next((c for c in candidates if all(abs(a - b) <= tolerance for a, b in zip(_times(c), _times(item),
                                                                                          strict=True))), None)
        if match is None:
            absent.append(item)
        else:
            candidates.remove(match)
    return absent


def _exact(item: tuple) -> tuple:
    return tuple(value for value in item if not isinstance(value, float))


def _times(item: tuple) -> tuple:
    return tuple(value for value in item if isinstance(value, float))


def track_chunks(data: bytes) -> list[bytes]:
    """The track chunks of a MIDI file, as bytes (header included)."""
    chunks, position = [], 14
    while position < len(data):
        length = struct.unpack_from(">I", data, position + 4)[0]
        chunks.append(data[position : position + 8 + length])
        position += 8 + length
    return chunks


def channels(data: bytes) -> list[set[int]]:
    """The channels each track of a MIDI file uses."""
    tracks = mido.MidiFile(file=io.BytesIO(data)).tracks
    return [{message.channel for message in track if hasattr(message, "channel")} for track in tracks]

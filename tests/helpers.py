"""Helpers the tests import (``from helpers import ...``): MIDI built inline (exact ticks through mido), tiny
random checkpoints, the command line in a subprocess, and piano MIDI from outside the collection."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import mido
import pretty_midi
import torch

from midigen import checkpoint
from midigen.model import MidiGRU, ModelConfig
from midigen.tokenizer import Tokenizer, TokenizerConfig

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_WEIGHTS = ROOT / "weights" / "midigen-ff-piano"
GRID = 12  # fixture notes are given on a grid of 12 steps per beat (the tokenizer's default)


# -- MIDI built from exact ticks ---------------------------------------------


def midi_bytes(
    notes=(),
    resolution: int = 480,
    tempo: float = 120.0,
    extra_tracks=(),
    drums=(),
    tempo_changes=(),
    program: int = 0,
    pedal=(),
) -> bytes:
    """A type-1 MIDI file. Notes are ``(pitch, start, duration[, velocity])`` in 1/12-beat steps.

    ``extra_tracks`` is a list of further note lists (one track each, its own channel), ``drums``
    a note list written on channel 10, ``tempo_changes`` a list of ``(beat, bpm)`` after the first tempo,
    ``pedal`` a list of ``(step, value)`` sustain-pedal changes (controller 64) in the first track.
    """
    if resolution % GRID:
        raise ValueError("fixture resolutions must be multiples of 12")
    ticks_per_step = resolution // GRID
    file = mido.MidiFile(type=1, ticks_per_beat=resolution)
    conductor = [(0, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo)))]
    for beat, bpm in tempo_changes:
        conductor.append((round(beat * resolution), 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))))
    file.tracks.append(mido_track(conductor))
    parts = [(list(notes), 0)] + [(list(t), i + 1) for i, t in enumerate(extra_tracks)]
    if drums:
        parts.append((list(drums), 9))
    for part, channel in parts:
        events = [(0, 0, mido.Message("program_change", program=program, channel=channel))]
        if channel == 0:
            events += [(step * ticks_per_step, 0, mido.Message("control_change", control=64, value=value))
                       for step, value in pedal]
        for note in part:
            pitch, start, duration, velocity = (*note, 80)[:4]
            on, off = start * ticks_per_step, (start + duration) * ticks_per_step
            # note-offs sort before note-ons at the same tick so repeated keys stay separate notes
            events.append((on, 1, mido.Message("note_on", note=pitch, velocity=velocity, channel=channel)))
            events.append((off, 0, mido.Message("note_off", note=pitch, velocity=0, channel=channel)))
        file.tracks.append(mido_track(events))
    buffer = io.BytesIO()
    file.save(file=buffer)
    return buffer.getvalue()


def mido_track(events, name: str | None = None) -> mido.MidiTrack:
    """A track from ``(tick, order, message)``; lower order first at equal ticks (note-offs before note-ons)."""
    track = mido.MidiTrack()
    if name is not None:
        track.append(mido.MetaMessage("track_name", name=name))
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def make_midi(notes=(), **kwargs) -> pretty_midi.PrettyMIDI:
    """``midi_bytes`` parsed by pretty_midi."""
    return pretty_midi.PrettyMIDI(io.BytesIO(midi_bytes(notes, **kwargs)))


def write_midi(path: Path, notes=(), **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(midi_bytes(notes, **kwargs))
    return path


def quantized_velocity(velocity: int, levels: int = 8) -> int:
    """The velocity a note comes back with: the centre of its level (spec: ``levels`` equal bands of 0..127)."""
    level = min(velocity * levels // 128, levels - 1)
    return max(1, min(127, round((level + 0.5) * 128 / levels)))


def note_tuples(score) -> list[tuple[int, int, int, int]]:
    return [(n.pitch, n.start, n.duration, n.velocity) for n in score.notes]


def beats_of(midi: pretty_midi.PrettyMIDI, steps_per_beat: int = GRID) -> list[tuple[int, int, int, int]]:
    """(pitch, onset step, duration in steps, velocity) of every non-drum note, sorted, from the tick grid."""
    scale = steps_per_beat / midi.resolution
    out = []
    for instrument in midi.instruments:
        if instrument.is_drum:
            continue
        for n in instrument.notes:
            start, end = midi.time_to_tick(n.start), midi.time_to_tick(n.end)
            out.append((n.pitch, round(start * scale), round((end - start) * scale), n.velocity))
    return sorted(out)


# A piece exercising chords with octaves, triplets, 16ths, long notes and several dynamics.
SHOWCASE = [
    # beat 0: C major chord spread over three octaves
    (36, 0, 24, 100), (48, 0, 24, 100), (60, 0, 12, 90), (64, 0, 12, 90), (67, 0, 12, 90), (72, 0, 12, 90),
    # beat 1: eighth-note triplets
    (72, 12, 4, 50), (74, 16, 4, 50), (76, 20, 4, 50),
    # beat 2: sixteenths with rising dynamics
    (77, 24, 3, 30), (79, 27, 3, 45), (81, 30, 3, 60), (83, 33, 3, 75),
    # beat 3: a dotted half under a quarter-note triplet
    (41, 36, 30, 110), (84, 36, 8, 120), (86, 44, 8, 120), (88, 52, 8, 127),
    # after a rest: a low/high octave pair and a sustained top note
    (21, 84, 6, 64), (33, 84, 6, 64), (108, 90, 96, 5),
]


def scale_piece(index: int) -> list[tuple[int, int, int, int]]:
    """A simple repeating scale/arpeggio line (training data): 64 notes of eighths."""
    pattern = [0, 2, 4, 5, 7, 9, 11, 12, 11, 9, 7, 5, 4, 2, 0, 7] if index % 2 else [0, 4, 7, 12, 16, 12, 7, 4]
    root = 48 + 2 * index
    return [(root + pattern[i % len(pattern)], 6 * i, 6, 80 if i % 4 else 100) for i in range(64)]


def write_scales(folder: Path, count: int = 6) -> Path:
    for i in range(count):
        write_midi(folder / f"scale{i}.mid", scale_piece(i), tempo=100 + 10 * i)
    return folder


# -- checkpoints ----------------------------------------------------------------


def random_checkpoint(random_seed: int = 1234, hidden: int = 32, layers: int = 2, embedding: int = 16, config=None,
                      controls: int = 0):
    """(model, Checkpoint) of a randomly initialised MidiGRU over the default vocabulary
    (reading a control vector of ``controls`` values when it is not 0)."""
    tokenizer_config = config or TokenizerConfig()
    torch.manual_seed(random_seed)
    model_config = ModelConfig(len(Tokenizer(tokenizer_config).vocab), embedding, hidden, layers, dropout=0.0,
                               control_size=controls)
    model = MidiGRU(model_config).eval()
    tensors = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    return model, checkpoint.Checkpoint(model_config, tokenizer_config, tensors, {"note": "random weights"})


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """``python -m midigen ARGS`` from the repository root, one torch thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "midigen", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)




# -- piano MIDI from outside the collection, built in code --------------------------------------

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS = {MAJOR: (0, 5, 3, 4), MINOR: (0, 5, 2, 6)}  # I-vi-IV-V and i-VI-III-VII, as scale degrees


def _chord(tonic: int, mode, degree: int, octave: int) -> list[int]:
    return [octave + tonic + mode[(degree + step) % 7] + 12 * ((degree + step) // 7) for step in (0, 2, 4)]


def performance_midi(tonic: int, minor: bool = False, bars: int = 24, random_seed: int = 0) -> pretty_midi.PrettyMIDI:
    """A free-timing piano performance: rubato onsets off any grid, varied velocities, arpeggiated left hand,
    a right-hand melody on the scale, and the sustain pedal changed every bar (legato pedalling)."""
    import random

    rng = random.Random(random_seed)
    mode = MINOR if minor else MAJOR
    midi = pretty_midi.PrettyMIDI(initial_tempo=72.0)
    piano = pretty_midi.Instrument(0)
    time, beat = 0.3, 60 / 72.0
    for bar in range(bars):
        degree = PROGRESSIONS[mode][bar % 4]
        beat = 60 / 72.0 * rng.uniform(0.85, 1.2)  # rubato
        pedal_down = time + 0.05
        piano.control_changes.append(pretty_midi.ControlChange(64, 0, time))
        piano.control_changes.append(pretty_midi.ControlChange(64, 100 + rng.randrange(27), pedal_down))
        for i, pitch in enumerate(_chord(tonic, mode, degree, 36) + [36 + tonic + mode[degree] + 12]):
            start = time + i * beat / 2 + rng.uniform(-0.02, 0.02)
            piano.notes.append(pretty_midi.Note(40 + rng.randrange(30), pitch, start, start + beat * 0.4))
        for step in range(rng.choice((3, 4, 6))):
            start = time + step * 4 * beat / 6 + rng.uniform(-0.03, 0.03)
            pitch = 72 + tonic + mode[(degree + rng.choice((0, 2, 4, 1, 5))) % 7] - 12 * rng.randrange(2)
            end = start + beat * rng.uniform(0.3, 1.0)
            piano.notes.append(pretty_midi.Note(60 + rng.randrange(50), pitch, start, end))
        time += 4 * beat
    piano.control_changes.append(pretty_midi.ControlChange(64, 0, time))
    midi.instruments.append(piano)
    return midi


def pop_midi(tonic: int, minor: bool = False, bars: int = 16, random_seed: int = 0) -> pretty_midi.PrettyMIDI:
    """A pop arrangement on a grid: drums, a bass line, block chords and a syncopated melody on four tracks."""
    import random

    rng = random.Random(random_seed)
    mode = MINOR if minor else MAJOR
    midi = pretty_midi.PrettyMIDI(initial_tempo=104.0)
    beat = 60 / 104.0
    drums, bass, keys, lead = (pretty_midi.Instrument(0, is_drum=True), pretty_midi.Instrument(33),
                               pretty_midi.Instrument(0), pretty_midi.Instrument(81))
    for bar in range(bars):
        degree = PROGRESSIONS[mode][bar % 4]
        t0 = bar * 4 * beat
        for i in range(8):
            drums.notes.append(pretty_midi.Note(90, 42, t0 + i * beat / 2, t0 + i * beat / 2 + 0.05))
        for i in range(4):
            root = 36 + tonic + mode[degree]
            bass.notes.append(pretty_midi.Note(100, root + (7 if i == 2 else 0), t0 + i * beat, t0 + (i + 0.9) * beat))
        for pitch in _chord(tonic, mode, degree, 60):
            keys.notes.append(pretty_midi.Note(70, pitch, t0, t0 + 2 * beat))
            keys.notes.append(pretty_midi.Note(65, pitch, t0 + 2.5 * beat, t0 + 4 * beat))
        position = 0.0
        while position < 4:
            length = rng.choice((0.5, 0.5, 1.0, 1.5))
            pitch = 72 + tonic + mode[(degree + rng.choice((0, 2, 4, 1, 3))) % 7]
            lead.notes.append(pretty_midi.Note(95, pitch, t0 + position * beat, t0 + (position + length * 0.9) * beat))
            position += length
    midi.instruments.extend([drums, bass, keys, lead])
    return midi

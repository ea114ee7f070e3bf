"""The endless stream: the writer read a passage at a time (same steering inputs and recalls as a full rescan),
bounded memory, notes handed out final and in order, live steering, the session's MIDI file, and the command."""

import io

import mido
import numpy as np
import pretty_midi
import pytest
from helpers import write_midi

from midigen import cli
from midigen.controls import KEY_NAMES, Controls, TokenNotes, key_index
from midigen.endless import EndlessStream, play
from midigen.generate import GenerationRequest
from midigen.midi_io import read_midi
from midigen.phrases import CONTEXT, MusicSoFar, PhraseWriter
from midigen.rules import SamplingSettings
from midigen.splice import Seed
from midigen.stats import estimate_key, is_drone, score_profile, windows
from midigen.tokenizer import BOS, Note, Score

SEED_NOTES = [(60 + (i * 5) % 12, 6 * i, 6, 90) for i in range(64)]


def prompt_of(tokenizer):
    return [BOS, tokenizer.vocab.encode("TEMPO", tokenizer.tempo_bin(120)), tokenizer.vocab.encode("VELOCITY", 5)]


def stream(generator, seed=None, **request):
    return EndlessStream(generator, GenerationRequest(**{"random_seed": 3, **request}), seed)


def bars(s: EndlessStream, count: int) -> list[tuple[int, float, float, int]]:
    return [note for _ in range(count) for note in s.advance()]


# -- the writer, a passage at a time -----------------------------------------------------------


def test_passages_read_the_music_as_a_full_rescan_would(shipped_generator):
    """After every passage, the running sums steering reads equal the controls measured on all new tokens at once
    (``TokenNotes``, what the writer read before), and every phrase recalled is the tokens heard at its bars."""
    tok = shipped_generator.tokenizer
    writer = PhraseWriter(shipped_generator.sampler, Controls(mean_pitch=64.0, notes_per_beat=3.0), 0.5)
    settings = SamplingSettings(0.95, 0.95, max_notes=300, max_tokens=1264)
    music, new = MusicSoFar(tok, prompt_of(tok), 0), []
    passages = list(writer.passages(prompt_of(tok), settings, 7, 0))
    assert len(passages) > 20
    for passage in passages:
        music.hear(passage)
        new += passage
        assert music.controls() == TokenNotes.of(np.asarray(new), tok, 5).controls(0, len(new), 12)
    assert [t for passage in passages for t in passage] == writer.write(prompt_of(tok), settings, 7, 0)
    phrase = music.phrase(4 * 48)
    heard = [t for _, group in phrase.events for t in group]
    starts = np.cumsum([t - tok.vocab.kind_ranges()["SHIFT"].start + 1 if t in tok.vocab.kind_ranges()["SHIFT"]
                        else 0 for t in new])
    assert heard == [t for t, at in zip(new, starts, strict=True)
                     if 4 * 48 <= at < 6 * 48 and t not in tok.vocab.kind_ranges()["SHIFT"]]


def test_memory_stays_bounded_and_counts_only_the_last_bars(tokenizer):
    shift, pitch, duration = (tokenizer.vocab.kind_ranges()[k].start for k in ("SHIFT", "PITCH", "DURATION"))
    music = MusicSoFar(tokenizer, prompt_of(tokenizer), 0, memory=4)
    for bar in range(500):  # a bar of four quarter notes, one pitch per bar
        music.hear([t for _ in range(4) for t in (pitch + 39 + bar % 12, duration + 11, shift + 11)])
    assert len(music.events) <= 5 and len(music.by_bar) <= 5 and len(music.tail) <= CONTEXT
    kept = range(497, 500)  # the music has just reached bar 500: it and the three before are remembered
    assert music.controls().mean_pitch == np.mean([60 + bar % 12 for bar in kept])
    assert music.controls().notes_per_beat == 12 / 11  # 12 notes from the first onset to the last, 11 beats


# -- the stream ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    path = write_midi(tmp_path_factory.mktemp("seed") / "seed.mid", SEED_NOTES, tempo=100, resolution=96)
    return Seed(read_midi(path))


@pytest.mark.parametrize("seeded", [False, True])
def test_advance_hands_out_notes_in_order_as_their_chords_complete(shipped_generator, seed, seeded):
    s = stream(shipped_generator, seed if seeded else None)
    found, frontiers = [], []
    for _ in range(60):
        found += s.advance()
        frontiers.append(s.frontier)
        assert all(start < s.frontier for _, start, _, _ in found)
    assert frontiers == sorted(frontiers) and frontiers[-1] > 20
    assert [n[1] for n in found] == sorted(n[1] for n in found)
    step = s.seconds_per_step
    decoded = [(n.pitch, (n.start - s.start) * step, (n.start + n.duration - s.start) * step, n.velocity)
               for n in s.new_music(until=s.frontier).notes]
    assert [(p, a, v) for p, a, _, v in sorted(found)] == [(p, a, v) for p, a, _, v in sorted(decoded)]
    struck = {(n.pitch, (n.start - s.start) * step) for n in s.new_music().notes}  # also those not handed out yet
    for (pitch, _, end, _), (_, _, decoded_end, _) in zip(sorted(found), sorted(decoded), strict=True):
        if end != decoded_end:  # written longer, ended where its key is struck again (as the synthesizer does)
            assert end > decoded_end and (pitch, decoded_end) in struck


def test_a_key_change_is_followed(shipped_generator):
    s = stream(shipped_generator, key="C major")
    bars(s, 40)
    s.steer(key="F# major")
    later = bars(s, 80)[-300:]
    profile = score_profile(Score([Note(p, round(a * 100), max(1, round((b - a) * 100))) for p, a, b, _ in later]))
    assert KEY_NAMES[estimate_key(profile)] == "F# major"


def test_a_density_change_is_followed(shipped_generator):
    s = stream(shipped_generator, density="sparse")
    bars(s, 40)
    start = s.written
    sparse = len(bars(s, 30)) / (s.written - start)
    s.steer(density="dense")
    bars(s, 10)
    start = s.written
    dense = len(bars(s, 30)) / (s.written - start)
    assert dense > 1.5 * sparse


def test_steering_is_checked_and_reaches_the_writer(shipped_generator):
    s = stream(shipped_generator)
    for bad in ({"key": "H major"}, {"density": "loud"}, {"temperature": 0.0}, {"repetition": 2.0}):
        with pytest.raises(ValueError):
            s.steer(**bad)
    s.steer(temperature=1.2, repetition=0.1)
    assert (s.writer.temperature, s.writer.recall) == (1.2, 0.1)


def test_ten_minutes_in_a_named_key_neither_drone_nor_leave_it(shipped_generator):
    """Without the pitch-class balance this stream hammered its tonic and fifth (15 of 20 minutes over 80 %)."""
    s = stream(shipped_generator, key="E major", random_seed=2)
    play(s, 10)
    cut = windows(s.new_music(until=600), 12)
    assert len(cut) >= 9
    assert not any(is_drone(score_profile(w)) for w in cut)
    assert np.mean([estimate_key(score_profile(w)) == key_index("E major") for w in cut]) >= 0.9


def test_midi_bytes_from_scratch_and_cut(shipped_generator):
    s = stream(shipped_generator)
    notes = bars(s, 40)
    for data in (s.midi_bytes(), s.midi_bytes(until=10.0)):
        assert len(mido.MidiFile(file=io.BytesIO(data)).tracks) >= 1
    whole = pretty_midi.PrettyMIDI(io.BytesIO(s.midi_bytes()))
    cut = pretty_midi.PrettyMIDI(io.BytesIO(s.midi_bytes(until=10.0)))
    assert len(whole.instruments) == 1 and len(whole.instruments[0].notes) >= len(notes)
    assert [n.start < 10.0 for n in cut.instruments[0].notes] == [True] * len(cut.instruments[0].notes)
    assert len(cut.instruments[0].notes) == sum(start < 10.0 for _, start, _, _ in notes) > 0


def test_midi_bytes_keep_the_seed(shipped_generator, seed):
    s = stream(shipped_generator, seed)
    notes = bars(s, 30)
    data = s.midi_bytes(until=s.frontier)
    assert data[14 : len(seed.file.data)] == seed.file.data[14:]  # the seed's tracks, byte for byte
    midi = pretty_midi.PrettyMIDI(io.BytesIO(data))
    assert len(mido.MidiFile(file=io.BytesIO(data)).tracks) == len(mido.MidiFile(file=io.BytesIO(seed.file.data))
                                                                   .tracks) + 1
    new = midi.instruments[-1].notes
    assert len(new) == len(notes)
    assert min(n.start for n in new) >= seed.last_onset - 1e-6


# -- the command ----------------------------------------------------------------------------------


def test_endless_command_writes_the_minutes_asked(tmp_path, capsys):
    out = tmp_path / "stream.mid"
    code = cli.main(["endless", "--minutes", "1.5", "--out", str(out), "--random-seed", "5", "--key", "D minor",
                     "--change", "1:key=A major", "--change", "0.5:density=dense", "--device", "cpu"])
    printed = capsys.readouterr().out.strip()
    assert code == 0
    midi = pretty_midi.PrettyMIDI(str(out))
    count = len(midi.instruments[0].notes)
    assert printed == f"{out}: {count:,} new notes, 1.5 min, random seed 5, style game-piano"
    assert midi.get_end_time() > 80 and max(n.start for n in midi.instruments[0].notes) < 90


@pytest.mark.parametrize("change", ["3key=D minor", "x:key=D minor", "-1:key=D minor", "3:tempo=90", "3:key=H major",
                                    "3:density=loud", "3:temperature=hot", "3:temperature=0", "3:repetition=1.5",
                                    "3:key="])
def test_bad_changes_are_one_line_errors(tmp_path, capsys, change):
    out = tmp_path / "x.mid"
    code = cli.main(["endless", "--minutes", "5", "--out", str(out), "--change", change, "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    assert err.startswith("midigen endless: error: --change") and len(err.strip().splitlines()) == 1


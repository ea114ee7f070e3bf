"""midigen.splice: the seed file kept as uploaded, the new music appended on a track of its own."""

from __future__ import annotations

import io
import struct

import mido
import pretty_midi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seed_pieces import (
    CLIPPED,
    OUT_OF_RANGE,
    band,
    channels,
    contents,
    long_piece,
    missing,
    performance,
    read_strictly,
    track_chunks,
    with_raw_track,
)

from midigen.midi_io import MidiError, read_midi, trim_to_last
from midigen.splice import Seed, cut, excerpt, splice
from midigen.tokenizer import Note, Score, Tokenizer

TOKENIZER = Tokenizer()
GRID = TOKENIZER.config.steps_per_beat
PIECES = {"performance": performance, "band": band, "long": long_piece}


def primed_seed(data: bytes) -> Seed:
    """The seed as the app reads it: the whole file, the model primed with its last 1,000 notes / 90 s."""
    file = read_midi(data)
    part = trim_to_last(file.midi, 1000, 90.0)
    return Seed(file, part.midi, part.start)


def continuation_after(seed: Seed) -> Score:
    """New notes as the model writes them: one added to the seed's last onset, then two later steps."""
    last = TOKENIZER.midi_to_score(seed.primed).notes[-1].start
    return Score([Note(20, last, 3, 99), Note(108, last + 1, 6, 40), Note(64, last + GRID, 2 * GRID, 70)])


@pytest.fixture(scope="module", params=list(PIECES))
def spliced(request):
    data = PIECES[request.param]()
    seed = primed_seed(data)
    continuation = continuation_after(seed)
    midi, output = splice(seed, continuation, GRID, program=40)
    return data, seed, continuation, midi, output


def test_the_seed_tracks_are_kept_byte_for_byte(spliced):
    data, seed, _, _, output = spliced
    assert track_chunks(output)[:-1] == track_chunks(data)
    out = mido.MidiFile(file=io.BytesIO(output))
    assert (out.type, len(out.tracks)) == (1, len(track_chunks(data)) + 1)
    assert out.ticks_per_beat == seed.file.midi.resolution


def test_every_seed_note_control_bend_tempo_and_time_signature_comes_back(spliced):
    data, _, _, _, output = spliced
    before, after = contents(data), contents(output)
    assert not missing(before.notes, after.notes)
    assert not missing(before.controls, after.controls)
    assert not missing(before.bends, after.bends)
    assert after.tempi == before.tempi and after.time_signatures == before.time_signatures
    assert len(after.notes) == len(before.notes) + 3


def test_the_new_music_is_a_track_of_its_own_on_a_free_channel(spliced):
    data, _, _, midi, output = spliced
    *seed_channels, new_channels = channels(output)
    (channel,) = new_channels
    assert channel != 9 and all(channel not in used for used in seed_channels)
    new = pretty_midi.PrettyMIDI(io.BytesIO(output)).instruments[-1]
    assert new.program == 40 and not new.is_drum
    assert [n.pitch for n in new.notes] == [20, 108, 64] == [n.pitch for n in midi.instruments[-1].notes]
    assert [n.velocity for n in new.notes] == [99, 40, 70]


def test_the_new_music_starts_at_the_last_onset_on_the_models_grid(spliced):
    _, seed, continuation, midi, _ = spliced
    first, second, third = midi.instruments[-1].notes
    step = 60.0 / (seed.bpm * GRID)  # the seed's final tempo holds on
    assert first.start == pytest.approx(seed.last_onset, abs=1e-9)  # added to the last chord: exactly with it
    assert 0 <= second.start - seed.last_onset <= 1.5 * step  # the next grid step: no gap beyond one step
    assert third.start - second.start == pytest.approx((GRID - 1) * step, abs=2e-3)
    assert third.end - third.start == pytest.approx(2 * GRID * step, abs=2e-3)
    onsets = [n.start for i in seed.file.midi.instruments if not i.is_drum for n in i.notes]
    assert max(onsets) == seed.last_onset <= min(n.start for n in midi.instruments[-1].notes)


def test_what_it_plays_is_what_the_file_holds(spliced):
    _, seed, _, midi, output = spliced
    assert midi.instruments[:-1] == seed.file.midi.instruments  # shared, not copied
    played, held = contents(midi), contents(output)
    assert not missing(held.notes, played.notes) and len(played.notes) == len(held.notes)
    assert not missing(held.controls, played.controls) and not missing(held.bends, played.bends)


def test_a_long_seed_is_primed_with_its_end_and_kept_whole():
    seed = primed_seed(long_piece())
    assert seed.priming is not None and 60 < seed.priming_start < 61
    assert len([n for i in seed.primed.instruments for n in i.notes]) <= 1000
    assert seed.primed.get_end_time() <= 90.0 + 1e-6
    _, output = splice(seed, continuation_after(seed), GRID, program=0)
    assert not missing(contents(long_piece()).notes, contents(output).notes)


def test_the_grid_of_a_trimmed_seed_starts_at_the_first_note_it_kept():
    """Steps count from the first kept note (priming time 0), whatever the seed's beat grid."""
    seed = primed_seed(long_piece())
    step = TOKENIZER.midi_to_score(seed.primed).notes[-1].start + 5
    midi, _ = splice(seed, Score([Note(60, step, 1)]), GRID, program=0)
    expected = seed.priming_start + step * 60.0 / (seed.bpm * GRID)
    assert midi.instruments[-1].notes[0].start == pytest.approx(expected, abs=2e-3)


def test_a_second_continuation_keeps_the_first_seed_and_continuation_exactly():
    seed = Seed(read_midi(band()))
    _, first = splice(seed, continuation_after(seed), GRID, program=40)
    again = Seed(read_midi(first))
    _, second = splice(again, continuation_after(again), GRID, program=73)
    assert track_chunks(second)[:-1] == track_chunks(first)
    before, after = contents(first), contents(second)
    assert not missing(before.notes, after.notes) and not missing(before.controls, after.controls)
    *earlier, newest = channels(second)
    assert not newest & set().union(*earlier)
    assert pretty_midi.PrettyMIDI(io.BytesIO(second)).instruments[-1].program == 73


def test_when_every_channel_is_taken_the_program_changes_where_the_new_music_starts():
    file = mido.MidiFile(type=1, ticks_per_beat=220)
    for channel in range(16):
        file.tracks.append(mido.MidiTrack([mido.Message("program_change", channel=channel, program=channel),
                                           mido.Message("note_on", channel=channel, note=60 + channel, velocity=80),
                                           mido.Message("note_off", channel=channel, note=60 + channel, time=110)]))
    buffer = io.BytesIO()
    file.save(file=buffer)
    seed = Seed(read_midi(buffer.getvalue()))
    assert seed.file.channels == frozenset(range(16))
    _, output = splice(seed, Score([Note(60, 2 * GRID, GRID)]), GRID, program=40)
    new = mido.MidiFile(file=io.BytesIO(output)).tracks[-1]
    change = next(m for m in new if m.type == "program_change")
    assert change.channel != 9 and change.program == 40
    ticks = 0
    for message in new:
        ticks += message.time
        if message.type == "program_change":
            assert ticks == 2 * 220  # two beats
            break
    assert pretty_midi.PrettyMIDI(io.BytesIO(output)).instruments[-1].program == 40


def test_seed_from_a_pretty_midi_object():
    midi = pretty_midi.PrettyMIDI(initial_tempo=150.0)
    piano = pretty_midi.Instrument(0)
    piano.notes.append(pretty_midi.Note(100, 60, 0.0, 0.4))
    piano.control_changes.append(pretty_midi.ControlChange(64, 127, 0.0))
    midi.instruments.append(piano)
    seed = Seed.from_midi(midi)
    assert seed.bpm == pytest.approx(150.0) and seed.last_onset == 0.0 and seed.note_count == 1
    assert seed.primed is seed.file.midi and seed.priming_start == 0.0
    assert contents(seed.file.midi).controls == [(0, 64, 127, 0.0)]


# -- excerpt: what a player started in the middle sounds ------------------------------------------


def test_excerpt_chases_held_notes_controllers_and_bends():
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(5, name="keys")
    piano.notes += [pretty_midi.Note(90, 60, 0.0, 1.0), pretty_midi.Note(70, 62, 1.0, 5.0),
                    pretty_midi.Note(50, 64, 3.0, 4.0)]
    piano.control_changes += [pretty_midi.ControlChange(64, 127, 0.5), pretty_midi.ControlChange(7, 90, 0.2),
                              pretty_midi.ControlChange(64, 0, 1.5), pretty_midi.ControlChange(64, 100, 1.8),
                              pretty_midi.ControlChange(64, 0, 3.5)]
    piano.pitch_bends += [pretty_midi.PitchBend(500, 1.0), pretty_midi.PitchBend(-200, 2.5)]
    drums = pretty_midi.Instrument(0, is_drum=True)
    drums.notes += [pretty_midi.Note(100, 36, t, t + 0.1) for t in (0.0, 1.0, 2.0, 3.0)]
    midi.instruments += [piano, drums]
    part = excerpt(midi, 2.0)
    keys, kit = part.instruments
    assert (keys.program, keys.name, keys.is_drum, kit.is_drum) == (5, "keys", False, True)
    assert [(n.pitch, n.velocity, n.start, n.end) for n in keys.notes] == [(62, 70, 0.0, 3.0), (64, 50, 1.0, 2.0)]
    assert sorted((c.number, c.value, round(c.time, 9)) for c in keys.control_changes) == [
        (7, 90, 0.0), (64, 0, 1.5), (64, 100, 0.0)]
    assert [(b.pitch, round(b.time, 9)) for b in keys.pitch_bends] == [(500, 0.0), (-200, 0.5)]
    assert [(n.start, round(n.end, 9)) for n in kit.notes] == [(0.0, 0.1), (1.0, 1.1)]
    assert midi.instruments[0].notes[1].start == 1.0  # the piece itself is left alone
    assert excerpt(midi, 0.0) is midi


def test_excerpt_chases_at_most_the_last_pressed_held_notes():
    midi = pretty_midi.PrettyMIDI()
    organ = pretty_midi.Instrument(19)
    organ.notes += [pretty_midi.Note(80, 40 + i, 0.1 * i, 10.0) for i in range(20)]  # all held at 5 s
    organ.notes.append(pretty_midi.Note(80, 90, 6.0, 7.0))
    midi.instruments.append(organ)
    part = excerpt(midi, 5.0, max_held=3)
    assert [(n.pitch, n.start) for n in part.instruments[0].notes] == [(57, 0.0), (58, 0.0), (59, 0.0), (90, 1.0)]
    assert len(excerpt(midi, 5.0).instruments[0].notes) == 21


@pytest.mark.parametrize("name", ["performance", "band"])
def test_cut_keeps_everything_that_starts_before_the_time(name):
    data = PIECES[name]()
    whole = read_midi(data)
    at = whole.midi.get_end_time() / 2
    kept = contents(cut(whole, at).midi)
    original = contents(whole.midi)
    before = [n for n in original.notes if n[4] < at]
    assert before and not missing(before, kept.notes), "a note before the cut changed or went missing"
    assert len(kept.notes) == len(before), "a note after the cut was kept"
    assert any(n[5] > at for n in kept.notes) or name == "band"  # held notes keep their whole length
    playing = {n[0] for n in kept.notes}  # pretty_midi drops a part whose notes all come after the cut
    assert not missing([c for c in original.controls if c[3] < at and c[0] in playing], kept.controls)
    assert all(c[3] < at for c in kept.controls)
    assert kept.tempi[0] == original.tempi[0]


def test_cut_before_the_first_note_is_refused_clearly():
    whole = read_midi(performance(seconds=10.0))
    first = min(n.start for i in whole.midi.instruments for n in i.notes)
    with pytest.raises(MidiError, match="no notes before"):
        cut(whole, first / 2 if first > 0 else 0.0001)


# -- seeds with data bytes above 127: tolerated on reading, kept clipped, so every output is valid MIDI -------------


def test_a_seed_with_out_of_range_data_bytes_is_kept_with_only_them_clipped():
    seed = primed_seed(with_raw_track(band(), *OUT_OF_RANGE))
    assert seed.file.clipped == 3
    _, output = splice(seed, continuation_after(seed), GRID, program=40)
    assert track_chunks(output)[:-1] == track_chunks(with_raw_track(band(), *CLIPPED))
    new = read_strictly(output).instruments[-1]
    assert [n.pitch for n in new.notes] == [20, 108, 64] and new.program == 40
    again = Seed(read_midi(output))  # Continue: the output read back as the seed, nothing left to repair
    assert again.file.clipped == 0 and again.file.data == output


def test_regenerating_from_a_time_on_such_a_seed_writes_valid_midi():
    upload = read_midi(with_raw_track(performance(seconds=10.0), *OUT_OF_RANGE))
    kept = cut(upload, 5.0)
    odd = read_strictly(kept.data).instruments[-1]  # the appended track on channel 5
    assert odd.program == 127 and [n.velocity for n in odd.notes] == [127, 80]
    seed = Seed(kept)
    _, output = splice(seed, continuation_after(seed), GRID, program=40)
    assert read_strictly(output).instruments[-1].program == 40


def test_cut_saves_a_format_0_file_with_several_tracks_as_format_1():
    data = band()
    data = data[:8] + struct.pack(">H", 0) + data[10:]  # the loader reads it; mido cannot save it as type 0
    kept = cut(read_midi(data), 4.0)
    assert mido.MidiFile(file=io.BytesIO(kept.data)).type == 1
    assert len(track_chunks(kept.data)) == len(track_chunks(data))


def small_file(*tracks: list[tuple[int, ...]]) -> tuple[bytes, list[int]]:
    """A type-1 file (96 ticks per beat, 100 BPM) of the tracks' channel events, each ``(delta < 128, status,
    data...)``, and where in the file their data bytes are."""
    chunks, data_bytes, position = [], [], 14 + 8 + 11  # after the header and the tempo track
    for events in tracks:
        body = b"".join(bytes(event) for event in events) + b"\x00\xff\x2f\x00"
        offset = position + 8
        for event in events:
            data_bytes += range(offset + 2, offset + len(event))
            offset += len(event)
        chunks.append(b"MTrk" + struct.pack(">I", len(body)) + body)
        position += len(chunks[-1])
    tempo = b"MTrk" + struct.pack(">I", 11) + b"\x00\xff\x51\x03\x09\x27\xc0\x00\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks) + 1, 96) + tempo + b"".join(chunks), data_bytes


SMALL_SEEDS = [
    small_file([(0, 0xC0, 5), (0, 0xB0, 64, 100), (0, 0x90, 60, 90), (48, 0x80, 60, 0), (0, 0x90, 64, 70),
                (0, 0x90, 67, 110), (96, 0x80, 64, 0), (0, 0x80, 67, 0), (0, 0xE0, 0, 64), (0, 0xB0, 64, 0)]),
    small_file([(0, 0x91, 48, 80), (24, 0x81, 48, 0), (0, 0x91, 52, 80), (24, 0x91, 52, 0)],
               [(0, 0x99, 38, 100), (12, 0x89, 38, 0), (0, 0xC2, 33), (0, 0x92, 36, 60), (96, 0x82, 36, 0)]),
]
NEW_MUSIC = Score([Note(60, 0, 3, 99), Note(108, 1, 6, 40), Note(21, GRID, 24, 127)])


@st.composite
def damaged_seeds(draw) -> bytes:
    """A small valid file with a few data bytes set above 127, and maybe a few bytes of its tracks overwritten or
    flipped."""
    seed, data_bytes = draw(st.sampled_from(SMALL_SEEDS))
    data = bytearray(seed)
    for where in draw(st.lists(st.sampled_from(data_bytes), max_size=3)):
        data[where] = draw(st.integers(0x80, 0xFF))
    for _ in range(draw(st.integers(0, 2))):
        where = draw(st.integers(22, len(data) - 1))  # past the header and the first chunk header
        if draw(st.booleans()):
            data[where] = draw(st.integers(0, 0xFF))
        else:
            data[where] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_seeds(), st.floats(0.05, 1.0))
def test_any_seed_the_loader_takes_splices_and_cuts_into_files_standard_readers_read(data, fraction):
    try:
        upload = read_midi(data)
    except MidiError as error:
        assert 0 < len(str(error)) < 200
        return
    if len(upload.data) == len(data):  # nothing dropped or added: only the clipped data bytes differ
        changed = [(was, now) for was, now in zip(data, upload.data, strict=True) if was != now]
        assert len(changed) == upload.clipped and all(was > 127 and now == 127 for was, now in changed)
    _, output = splice(Seed(upload), NEW_MUSIC, GRID, program=40)
    read_strictly(output)
    assert output[14:].startswith(upload.data[14:])  # the seed's tracks as the loader kept them
    assert read_midi(output).clipped == 0  # Continue reads it back with nothing to repair
    try:
        kept = cut(upload, fraction * upload.midi.get_end_time())
    except MidiError:  # no notes before that time
        return
    read_strictly(kept.data)
    read_strictly(splice(Seed(kept), NEW_MUSIC, GRID, program=40)[1])

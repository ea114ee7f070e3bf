"""Studio.run with seeds like users bring (real model, real FluidSynth): the download keeps the seed exactly,
the players and piano roll play what the file holds."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pretty_midi
import pytest
import soundfile as sf
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

from midigen.examples import write_examples
from midigen.generate import GenerationRequest
from midigen.render import TAIL_SECONDS, RenderUnavailable, get_renderer
from midigen.studio import PREVIEW_SEED_SECONDS, Studio

REQUEST = GenerationRequest(seconds=4.0, random_seed=5, program=40)


@pytest.fixture(scope="module")
def studio(shipped_generator, tmp_path_factory):
    try:
        get_renderer()
    except RenderUnavailable as error:
        pytest.skip(str(error))
    return Studio(shipped_generator, output_root=tmp_path_factory.mktemp("outputs"))


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("seeds")
    paths = {}
    for name, build in (("performance", performance), ("band", band), ("long", long_piece)):
        paths[name] = folder / f"{name}.mid"
        paths[name].write_bytes(build())
    return paths


@pytest.fixture(scope="module")
def runs(studio, seeds):
    """One request per seed: the performance with two variations."""
    return {name: studio.run(path, replace(REQUEST, variations=2 if name == "performance" else 1))
            for name, path in seeds.items()}


def new_music(path) -> pretty_midi.Instrument:
    return pretty_midi.PrettyMIDI(str(path)).instruments[-1]


def last_onset(data: bytes) -> float:
    midi = pretty_midi.PrettyMIDI(io.BytesIO(data))
    return max(n.start for i in midi.instruments if not i.is_drum for n in i.notes)


@pytest.mark.parametrize("name", ["performance", "band", "long"])
def test_the_download_holds_the_whole_seed_exactly_then_the_new_music(runs, seeds, name):
    seed = seeds[name].read_bytes()
    before = contents(seed)
    for midi_path in runs[name].midi_paths:
        output = midi_path.read_bytes()
        assert track_chunks(output)[:-1] == track_chunks(seed)
        after = contents(output)
        assert not missing(before.notes, after.notes), "seed notes changed or missing"  # pitch, velocity, 1 ms
        assert not missing(before.controls, after.controls), "controllers (the pedal) changed or missing"
        assert not missing(before.bends, after.bends) and after.tempi == before.tempi
        assert after.time_signatures == before.time_signatures
        new = new_music(midi_path)
        assert new.program == 40 and not new.is_drum and new.notes
        assert min(n.start for n in new.notes) >= last_onset(seed) - 1e-6
        assert len(after.notes) == len(before.notes) + len(new.notes)
        *seed_channels, new_channels = channels(output)
        assert not new_channels & set().union(*seed_channels)


def test_pedal_velocities_and_drums_survive(runs, seeds):
    performed = contents(seeds["performance"].read_bytes())
    assert sum(number == 64 for _, number, _, _ in performed.controls) > 30  # the fixture is what it claims
    assert len({velocity for *_, velocity, _, _ in performed.notes}) > 60
    drums = [n for n in contents(runs["band"].midi_paths[0].read_bytes()).notes if n[1]]
    assert len(drums) == len([n for n in contents(seeds["band"].read_bytes()).notes if n[1]]) > 50


def test_the_summary_counts_the_whole_seed(runs, seeds):
    for name, result in runs.items():
        seed_notes = len(contents(seeds[name].read_bytes()).notes)
        new = len(new_music(result.midi_paths[0]).notes)
        assert result.summary.startswith(f"{new} new notes after {seed_notes} seed notes"), result.summary


def test_a_long_seed_is_primed_with_its_end_and_previewed_from_shortly_before_the_new_music(runs, seeds):
    result = runs["long"]
    assert any("last 1000 notes" in notice and "holds all of it" in notice for notice in result.notices)
    (preview,) = [notice for notice in result.notices if "before the new music" in notice]
    start = last_onset(seeds["long"].read_bytes()) - PREVIEW_SEED_SECONDS
    minutes, seconds = divmod(round(pretty_midi.PrettyMIDI(str(result.midi_paths[0])).get_end_time()), 60)
    at = f"{round(start) // 60}:{round(start) % 60:02d}"
    assert f"{PREVIEW_SEED_SECONDS:.0f} s before the new music, at {at}" in preview
    assert f"the whole piece ({minutes}:{seconds:02d})" in preview
    expected = max(n.end for n in new_music(result.midi_paths[0]).notes) - start
    info = sf.info(str(result.audio_paths[0]))
    assert info.duration == pytest.approx(expected + TAIL_SECONDS, abs=0.2)


def test_a_short_seed_is_previewed_whole(studio, tmp_path):
    seed = tmp_path / "short.mid"
    seed.write_bytes(performance(seconds=8.0))
    result = studio.run(seed, REQUEST)
    assert not result.notices
    length = pretty_midi.PrettyMIDI(str(result.midi_paths[0])).get_end_time()
    assert sf.info(str(result.audio_paths[0])).duration == pytest.approx(length + TAIL_SECONDS, abs=0.1)


def test_the_piano_roll_shows_the_seed_and_the_new_music(runs):
    result = runs["band"]
    (lane,) = result.roll["lanes"]
    output = pretty_midi.PrettyMIDI(str(result.midi_paths[0]))
    *seed_tracks, new_track = output.instruments
    start = result.roll["start"]
    shown_seed = sorted((p, s) for p, s, _, new in lane["notes"] if not new)
    expected = sorted((n.pitch, round(max(n.start - start, 0.0), 3)) for i in seed_tracks if not i.is_drum
                      for n in i.notes if n.end > start)  # notes held where the preview starts sound from 0
    assert shown_seed and len(shown_seed) == len(expected)
    assert all(p == q and abs(s - t) <= 2e-3 for (p, s), (q, t) in zip(shown_seed, expected, strict=True))
    shown_new = sorted((p, s) for p, s, _, new in lane["notes"] if new)
    expected_new = sorted((n.pitch, round(n.start - start, 3)) for n in new_track.notes)
    assert [p for p, _ in shown_new] == [p for p, _ in expected_new]
    assert all(abs(s - t) <= 2e-3 for (_, s), (_, t) in zip(shown_new, expected_new, strict=True))
    assert lane["boundary"] == pytest.approx(min(n.start for n in new_track.notes) - start, abs=2e-3)


def test_continue_keeps_the_first_seed_and_first_continuation_exactly(studio, runs, seeds):
    first = runs["band"].midi_paths[0]
    second = studio.run(first, replace(REQUEST, program=73, random_seed=6))
    output = second.midi_paths[0].read_bytes()
    assert track_chunks(output)[:-1] == track_chunks(first.read_bytes())
    for earlier in (seeds["band"].read_bytes(), first.read_bytes()):
        before, after = contents(earlier), contents(output)
        assert not missing(before.notes, after.notes) and not missing(before.controls, after.controls)
    assert new_music(second.midi_paths[0]).program == 73
    assert new_music(first).program == pretty_midi.PrettyMIDI(io.BytesIO(output)).instruments[-2].program == 40


def test_without_the_seed_the_output_is_the_new_music_only(studio, seeds):
    result = studio.run(seeds["band"], replace(REQUEST, continuation_only=True))
    midi = pretty_midi.PrettyMIDI(str(result.midi_paths[0]))
    assert [i.program for i in midi.instruments] == [40]
    assert min(n.start for n in midi.instruments[0].notes) == pytest.approx(0.0)
    assert "seed notes" not in result.summary and not result.notices


def test_a_tempo_setting_with_a_kept_seed_is_explained(studio, seeds):
    result = studio.run(seeds["band"], replace(REQUEST, bpm=150.0))
    assert any("keeps the seed's tempo (100 BPM)" in notice for notice in result.notices), result.notices
    assert "at 100 BPM" in result.summary
    assert contents(result.midi_paths[0].read_bytes()).tempi == contents(seeds["band"].read_bytes()).tempi


def test_a_dense_seed_is_previewed_from_its_last_events(studio, tmp_path):
    """4,000 notes in the last 8 s: audio and piano roll begin where the last 3,000 start, and say so."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120)
    piano = pretty_midi.Instrument(0)
    piano.notes.append(pretty_midi.Note(70, 60, 0.0, 1.0))
    piano.notes += [pretty_midi.Note(70, 40 + i % 40, 30 + 0.002 * i, 30.05 + 0.002 * i) for i in range(4000)]
    midi.instruments.append(piano)
    seed = tmp_path / "dense.mid"
    midi.write(str(seed))
    result = studio.run(seed, REQUEST)
    (notice,) = [n for n in result.notices if "before the new music" in n]
    start = 30 + 0.002 * 1000  # the 3,000th last onset
    assert f"{round(0.002 * 3999 - 0.002 * 1000, 1):g} s before the new music, at 0:32" in notice
    end = pretty_midi.PrettyMIDI(str(result.midi_paths[0])).get_end_time()
    assert sf.info(str(result.audio_paths[0])).duration == pytest.approx(end - start + TAIL_SECONDS, abs=0.1)
    assert not missing(contents(seed.read_bytes()).notes, contents(result.midi_paths[0].read_bytes()).notes)


def test_the_example_seeds_come_back_with_their_velocities(studio, tmp_path):
    for path in write_examples(tmp_path / "examples")[:2]:
        result = studio.run(path, REQUEST)
        before, after = contents(path.read_bytes()), contents(result.midi_paths[0].read_bytes())
        assert {n[3] for n in before.notes} == {92, 64}
        assert not missing(before.notes, after.notes)


def test_regenerate_from_a_time_keeps_everything_before_it(studio, seeds):
    data = seeds["performance"].read_bytes()
    at = 20.0
    result = studio.run(seeds["performance"], replace(REQUEST, keep_seed_until=at))
    output = contents(result.midi_paths[0].read_bytes())
    original = contents(data)
    before = [n for n in original.notes if n[4] < at]
    assert not missing(before, output.notes), "a note before the cut changed or went missing"
    added = missing(output.notes, before)
    assert added and all(program == 40 for program, *_ in added), "a seed note after the cut was kept"
    assert min(start for *_, start, _ in added) >= max(start for *_, start, _ in before) - 1e-6


def test_a_seed_with_out_of_range_data_bytes_works_for_every_action(studio, tmp_path):
    """Generate with the seed kept and left out, regenerate from a time, and continue the output: each is told
    about the clipped bytes once, and each file written is one strict readers read."""
    seed = tmp_path / "odd.mid"
    seed.write_bytes(with_raw_track(performance(seconds=10.0), *OUT_OF_RANGE))
    notice = ("The seed had 3 out-of-range data bytes; midigen reads and keeps them as 127, as most MIDI readers do.")
    for request in (REQUEST, replace(REQUEST, continuation_only=True), replace(REQUEST, keep_seed_until=5.0)):
        composed = studio.compose(seed, request)
        assert composed.notices.count(notice) == 1, composed.notices
        read_strictly(composed.results[0].data)
    kept = studio.compose(seed, REQUEST).results[0].data
    assert track_chunks(kept)[:-1] == track_chunks(with_raw_track(performance(seconds=10.0), *CLIPPED))
    again = studio.compose(studio.write_seed(kept, "take.mid"), replace(REQUEST, program=73))
    assert notice not in again.notices
    assert read_strictly(again.results[0].data).instruments[-1].program == 73


def test_each_request_is_played_through_its_soundfont(studio):
    fluid, tim = (studio.run(None, replace(REQUEST, soundfont=name)) for name in ("fluidr3", "timgm6mb"))
    assert fluid.midi_paths[0].read_bytes() == tim.midi_paths[0].read_bytes()  # sampling ignores the soundfont
    restored = studio.restore([tim.midi_paths[0].read_bytes()], ["again.mid"], tim.roll["start"], "timgm6mb")[1]
    (fluid_audio, _), (tim_audio, _), (again, _) = (sf.read(paths[0]) for paths in
                                                    (fluid.audio_paths, tim.audio_paths, restored))
    assert len(fluid_audio) == len(tim_audio) == len(again)
    n = len(tim_audio)
    assert np.corrcoef(again[:, 0], tim_audio[:, 0])[0, 1] > 0.99
    assert abs(np.corrcoef(fluid_audio[:n, 0], tim_audio[:, 0])[0, 1]) < 0.5

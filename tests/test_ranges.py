"""Instruments' sounding ranges (real FluidSynth), the new music kept in them (real model), and takes that would not
sound named on the page."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import replace

import pretty_midi
import pytest
from helpers import pop_midi

from midigen import ranges
from midigen.endless import EndlessStream
from midigen.generate import GenerationRequest
from midigen.render import RenderUnavailable, get_renderer
from midigen.splice import Seed
from midigen.studio import QUIET_DBFS, Studio, new_music_level, quiet_takes

CONTRABASS, PIANO = 43, 0
HIGH = GenerationRequest(seconds=8.0, random_seed=3, program=CONTRABASS, soundfont="fluidr3")


@pytest.fixture(scope="module")
def fluidr3():
    try:
        return get_renderer("fluidr3")
    except RenderUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def high_seed() -> pretty_midi.PrettyMIDI:
    """A pop seed's chords and melody (D4 up), without its bass and drums."""
    midi = pop_midi(2, bars=8)
    midi.instruments = [i for i in midi.instruments if not i.is_drum and i.program in (0, 81)]
    return midi


def test_fluidr3_ranges_are_measured_by_rendering(fluidr3):
    started = time.perf_counter()
    table = ranges.measure(fluidr3)
    assert time.perf_counter() - started < 10  # about 0.35 s on a quiet machine
    assert len(table) == 128
    low, high = table[CONTRABASS]
    assert low <= 28 and 50 <= high < 59  # FluidR3's Contrabass is silent from A#3 up
    low, high = table[PIANO]
    assert low <= 21 and high >= 108  # the whole keyboard
    assert ranges.describe("fluidr3", CONTRABASS) == "FluidR3 GM's Contrabass sounds only up to A3"


def test_the_table_is_kept_in_memory_and_in_the_cache_folder(fluidr3, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(ranges, "_tables", {})
    measured = ranges.table("fluidr3")
    assert ranges.table("fluidr3") is measured
    [kept] = (tmp_path / "midigen").glob("ranges-*FluidR3_GM*.json")
    monkeypatch.setattr(ranges, "_tables", {})
    assert ranges.table("fluidr3") == measured  # read back from the file
    kept.write_text("not json")
    monkeypatch.setattr(ranges, "_tables", {})
    assert ranges.table("fluidr3") == measured  # measured again


def test_a_range_over_the_whole_keyboard_changes_nothing(shipped_generator, fluidr3):
    for soundfont in ("fluidr3", "musescore", "timgm6mb"):
        try:
            get_renderer(soundfont)
        except RenderUnavailable:
            continue
        assert shipped_generator.sounding_range(replace(HIGH, program=PIANO, soundfont=soundfont)) is None
    assert shipped_generator.sounding_range(HIGH) == (21, ranges.sounding("fluidr3", CONTRABASS)[1])


def test_a_contrabass_continues_a_high_seed_in_its_own_register(shipped_generator, fluidr3, high_seed):
    top = ranges.sounding("fluidr3", CONTRABASS)[1]
    assert min(n.pitch for i in high_seed.instruments for n in i.notes) > top  # the seed lies above the range
    for result in shipped_generator.generate(replace(HIGH, variations=2), high_seed):
        pitches = [note.pitch for note in result.new_music.notes]
        assert len(pitches) > 8 and max(pitches) <= top
        assert new_music_level(result.midi, fluidr3.render(result.midi)) > QUIET_DBFS
    stream = EndlessStream(shipped_generator, HIGH, Seed.from_midi(high_seed))  # endless play and the Duet's answers
    notes = [note for _ in range(12) for note in stream.advance()]
    assert len(notes) > 8 and max(pitch for pitch, *_ in notes) <= top


def test_a_take_that_cannot_sound_is_named_on_the_page(shipped_generator, fluidr3, high_seed, tmp_path):
    """Music written for TimGM6mb's Contrabass (which sounds everywhere) in the register of a seed an octave above
    ``high_seed``, played through FluidR3's: the notice names the take and why, before the audio and after it."""
    seed = tmp_path / "pop.mid"
    higher = copy.deepcopy(high_seed)
    for note in (note for instrument in higher.instruments for note in instrument.notes):
        note.pitch += 12
    higher.write(str(seed))

    def written_for_timgm6mb(request, seed):
        return shipped_generator.generate(replace(request, soundfont="timgm6mb"), seed), []

    studio = Studio(shipped_generator, output_root=tmp_path / "outputs")
    composition = studio.compose(seed, replace(HIGH, variations=2), written_for_timgm6mb)
    assert composition.silent == {
        take: f"Variation {take} is nearly silent: FluidR3 GM's Contrabass sounds only up to A3; choose another "
              "instrument or sound." for take in (1, 2)}
    result = studio.finish(composition)
    assert [n for n in result.notices if "silent" in n] == list(composition.silent.values())
    # measured on the audio too: a take whose new music makes no sound at all is named for it
    levels = [new_music_level(preview, fluidr3.render(preview)) for preview in composition.previews]
    mute = [take for take, level in enumerate(levels, start=1) if level == -math.inf]
    assert mute, levels
    named = quiet_takes(levels, "fluidr3")
    for take in mute:
        assert named[take] == (f"Variation {take} is nearly silent through FluidR3 GM (its new music makes no sound); "
                               "choose another instrument or sound.")
    assert named[mute[0]] in studio.finish(replace(composition, silent={}, notices=[])).notices


def test_the_page_warns_before_the_first_take_streams(shipped_generator, fluidr3, high_seed, tmp_path, monkeypatch):
    """The page's first half (``Composer.start``, which opens the live stream) warns; its summary says it again."""
    from concurrent.futures import ThreadPoolExecutor

    import app

    seed = tmp_path / "pop.mid"
    high_seed.write(str(seed))
    warned = []
    monkeypatch.setattr(app.gr, "Warning", warned.append)

    def written_for_timgm6mb(request, seed):
        return shipped_generator.generate(replace(request, soundfont="timgm6mb"), seed), []

    values = {"seconds": 8, "random_seed": 3, "randomize": False, "program": CONTRABASS, "soundfont": "fluidr3"}
    with ThreadPoolExecutor(1) as workers:
        composer = app.Composer(Studio(shipped_generator, output_root=tmp_path / "outputs"), written_for_timgm6mb,
                                workers, 300.0)
        key, player = composer.start(str(seed), values, lambda fraction, message: None)
        assert warned == ["The new music is nearly silent: FluidR3 GM's Contrabass sounds only up to A3; choose "
                          "another instrument or sound."]
        if player is not None:
            composer.live.close(player["id"])
        assert warned[0] in composer.finish(key, lambda fraction, message: None)["summary"]

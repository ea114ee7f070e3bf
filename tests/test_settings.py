"""The request's settings, declared once: the validator, the request, the command line and the README agree."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from midigen import cli, soundfonts
from midigen.generate import GenerationRequest
from midigen.settings import (
    SETTINGS,
    UserError,
    clean_settings,
    defaults,
    markdown_table,
    setting,
    soundfont_setting,
)

ROOT = Path(__file__).resolve().parent.parent
NUMBERS = [s for s in SETTINGS if s.kind in (int, float)]
FLAGS = [s for s in SETTINGS if s.kind is bool]
CHOICES = [s for s in SETTINGS if s.kind is str]


def test_defaults_make_the_default_request():
    request = GenerationRequest.from_settings(clean_settings({}))
    assert request.temperature == setting("temperature").default
    assert request.seconds == setting("seconds").default and request.notes is None
    assert request.bpm is None  # 0 = automatic
    assert request.random_seed is None  # randomize is on by default
    assert request.continuation_only is False


@pytest.mark.parametrize("spec", NUMBERS, ids=lambda s: s.name)
def test_numbers_are_clamped_to_their_declared_range(spec):
    below, above = spec.low - 1000, spec.high * 10 + 1000
    assert clean_settings({spec.name: below})[spec.name] == spec.low
    assert clean_settings({spec.name: above})[spec.name] == spec.high
    assert clean_settings({spec.name: str(spec.high)})[spec.name] == spec.high


@pytest.mark.parametrize("spec", NUMBERS, ids=lambda s: s.name)
@pytest.mark.parametrize(("value", "message"), [
    ("abc", "must be a number"), (True, "must be a number"), ([1], "must be a number"),
    (math.nan, "must be a finite number"), (math.inf, "must be a finite number"),
    (-math.inf, "must be a finite number"),
])
def test_non_numbers_are_refused_with_the_settings_name(spec, value, message):
    with pytest.raises(UserError, match=f"^{spec.name} {message}$"):
        clean_settings({spec.name: value})


@pytest.mark.parametrize("spec", [s for s in NUMBERS if s.kind is int], ids=lambda s: s.name)
def test_whole_number_settings_refuse_fractions(spec):
    with pytest.raises(UserError, match=f"^{spec.name} must be a whole number$"):
        clean_settings({spec.name: spec.low + 0.5})


@pytest.mark.parametrize("value", [0, None, "", 0.0])
def test_bpm_zero_or_empty_means_automatic(value):
    assert clean_settings({"bpm": value})["bpm"] is None
    assert GenerationRequest.from_settings(clean_settings({"bpm": value})).bpm is None


@pytest.mark.parametrize("spec", FLAGS, ids=lambda s: s.name)
def test_flags_accept_booleans_and_refuse_the_rest(spec):
    assert clean_settings({spec.name: "true"})[spec.name] is True
    assert clean_settings({spec.name: 0})[spec.name] is False
    for bad in ("abc", 5, 2.5):
        with pytest.raises(UserError, match=f"^{spec.name} must be true or false$"):
            clean_settings({spec.name: bad})


def test_randomize_and_keep_seed_shape_the_request():
    chosen = GenerationRequest.from_settings(
        clean_settings({"random_seed": 77, "randomize": False, "keep_seed": False}))
    assert chosen.random_seed == 77 and chosen.continuation_only is True
    assert GenerationRequest.from_settings(clean_settings({"random_seed": 77, "randomize": True})).random_seed is None


def test_every_setting_is_complete():
    for spec in SETTINGS:
        assert spec.label and spec.help and spec.widget in ("slider", "number", "dropdown", "checkbox"), spec
        assert (spec.low is None) == (spec.kind in (bool, str)), spec
        if spec.kind in (int, float):
            assert spec.low <= spec.default <= spec.high or spec.default == spec.automatic, spec
        if spec.kind is str:
            assert spec.default in [value for _, value in spec.choices], spec
        assert bool(spec.choices) == (spec.widget == "dropdown"), spec


@pytest.mark.parametrize("spec", CHOICES, ids=lambda s: s.name)
def test_choices_accept_their_values_and_refuse_the_rest(spec):
    for _, value in spec.choices:
        assert clean_settings({spec.name: value.upper()})[spec.name] == value
    for bad in ("louder", 5, None, ""):
        with pytest.raises(UserError, match=f"^{spec.name} must be "):
            clean_settings({spec.name: bad})


def test_a_key_may_be_spelled_with_flats_or_sharps():
    assert clean_settings({"key": "eb MAJOR"})["key"] == clean_settings({"key": "D# major"})["key"]
    assert GenerationRequest.from_settings(clean_settings({"key": "a minor", "density": "busy"})).key == "A minor"


def test_the_api_order_of_the_latest_settings_is_kept():
    assert [spec.name for spec in SETTINGS[-2:]] == ["soundfont", "style"]  # positional: new ones go at the end


def test_the_style_reaches_the_request_and_the_command_line():
    assert GenerationRequest.from_settings(clean_settings({})).style == "auto"
    assert GenerationRequest.from_settings(clean_settings({"style": "Chorale"})).style == "chorale"
    assert parse_generate("--style", "folk").style == "folk"
    with pytest.raises(UserError, match="^style must be auto, game-piano, chorale, folk, renaissance"):
        clean_settings({"style": "jazz"})


def test_the_instrument_is_the_style_s_unless_one_is_chosen():
    assert GenerationRequest.from_settings(clean_settings({})).program is None
    assert GenerationRequest.from_settings(clean_settings({"program": 40})).program == 40
    assert parse_generate().program is None and parse_generate("--program", "0").program == 0


def test_the_soundfont_reaches_the_request():
    assert GenerationRequest.from_settings(clean_settings({})).soundfont == setting("soundfont").default == "fluidr3"
    assert GenerationRequest.from_settings(clean_settings({"soundfont": "TimGM6mb"})).soundfont == "timgm6mb"
    assert parse_generate("--soundfont", "timgm6mb").soundfont == "timgm6mb"
    with pytest.raises(UserError, match="^soundfont must be fluidr3, musescore, timgm6mb"):
        parse_generate("--soundfont", "organ")


def test_a_missing_soundfont_is_left_out_with_one_log_line(tmp_path, caplog):
    gone = soundfonts.Soundfont("fluidr3", "FluidR3 GM (default)", "fluid-soundfont-gm", (tmp_path / "FluidR3.sf2",))
    catalogue = (gone, *soundfonts.CATALOGUE[1:])
    with caplog.at_level("INFO", logger="midigen"):
        spec = soundfont_setting(soundfonts.installed(catalogue))
    assert [record.getMessage() for record in caplog.records] == [
        f"soundfont fluidr3 left out of the choices: {tmp_path / 'FluidR3.sf2'} not found "
        "(apt install fluid-soundfont-gm)"]
    names = [name for _, name in spec.choices]
    assert "fluidr3" not in names and "timgm6mb" in names and spec.default == names[0]  # the first available
    assert soundfont_setting(()).choices == (("FluidR3 GM (default)", "fluidr3"),)  # none: rendering says why


def test_the_readme_table_is_the_declared_list():
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "README's settings table differs from midigen.settings: paste markdown_table()"


def parse_generate(*flags):
    args = cli.build_parser().parse_args(["generate", "--out", "x.mid", *flags])
    return cli.request_from_args(args)


def test_cli_flags_come_from_the_settings():
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["generate"].format_help()
    for spec in SETTINGS:
        if spec.cli:
            assert re.search(rf"{spec.cli}\b", help_text), spec.cli
    assert parse_generate() == GenerationRequest.from_settings({**defaults(), "randomize": True})


def test_cli_values_reach_the_request():
    request = parse_generate("--temperature", "1.3", "--top-p", "0.5", "--bpm", "90", "--program", "40",
                             "--random-seed", "9", "--variations", "3", "--continuation-only")
    assert (request.temperature, request.top_p, request.bpm, request.program) == (1.3, 0.5, 90.0, 40)
    assert (request.random_seed, request.variations, request.continuation_only) == (9, 3, True)
    assert parse_generate("--notes", "50").notes == 50 and parse_generate("--seconds", "600").seconds == 600
    assert parse_generate("--keep-seed-until", "12.5").keep_seed_until == 12.5
    assert parse_generate().keep_seed_until is None


def test_cli_refuses_values_outside_the_shared_range():
    with pytest.raises(ValueError, match="bpm must be between 40 and 240"):
        parse_generate("--bpm", "20")
    with pytest.raises(ValueError, match="temperature must be between 0.05 and 2"):
        parse_generate("--temperature", "5")


def test_train_flags_come_from_the_config_dataclasses():
    from dataclasses import fields

    from midigen.checkpoint import ModelConfig, TrainConfig

    args = cli.build_parser().parse_args(["train", "--data", "d", "--out", "o"])
    assert all(getattr(args, f.name) == f.default for f in fields(TrainConfig))
    assert all(getattr(args, f.name) == f.default for f in fields(ModelConfig) if f.name not in ("vocab_size",
                                                                                                   "control_size"))

"""midigen.rules: the grammar, the chord order and the settings both samplers obey (no compiler needed)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT

from midigen.rules import Rules, SamplingSettings, chord_top, grammar, grammar_violations
from midigen.tokenizer import BOS, EOS, PAD, Tokenizer, TokenizerConfig

TOKENIZER = Tokenizer()
RANGES = TOKENIZER.vocab.kind_ranges()


def test_rules_need_neither_numba_nor_torch():
    code = ("import sys; from midigen.rules import grammar; from midigen.tokenizer import Tokenizer; "
            "grammar(Tokenizer()); print(sorted({'numba', 'torch'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- grammar ----------------------------------------------------------------------------


def test_grammar_rules():
    may_follow = grammar(TOKENIZER)
    pitch, duration, shift = RANGES["PITCH"], RANGES["DURATION"], RANGES["SHIFT"]
    velocity, tempo = RANGES["VELOCITY"], RANGES["TEMPO"]
    assert set(np.flatnonzero(may_follow[BOS])) == set(tempo)
    assert set(np.flatnonzero(may_follow[velocity[3]])) == set(pitch)
    assert set(np.flatnonzero(may_follow[pitch[10]])) == set(duration)
    onset = set(shift) | set(velocity) | set(pitch)
    for previous in (tempo[0], shift[-1], duration[0]):
        assert set(np.flatnonzero(may_follow[previous])) == onset
    assert not may_follow[EOS].any() and not may_follow[PAD].any()
    assert not may_follow[:, EOS].any() and not may_follow[:, BOS].any() and not may_follow[:, PAD].any()
    assert set(np.flatnonzero(grammar(TOKENIZER, allow_eos=True)[duration[5]])) == onset | {EOS}
    bad = [BOS, pitch[0], pitch[1], duration[0], EOS]
    assert grammar_violations(bad, may_follow) == 3  # BOS>PITCH, PITCH>PITCH, DURATION>EOS
    assert grammar_violations([BOS], may_follow) == 0


def test_chord_top():
    p, d, s = RANGES["PITCH"], RANGES["DURATION"], RANGES["SHIFT"]
    vel = RANGES["VELOCITY"][2]
    assert chord_top([BOS, RANGES["TEMPO"][0]], RANGES) == -1
    assert chord_top([BOS, RANGES["TEMPO"][0], p[5], d[1], vel, p[9], d[2]], RANGES) == p[9]
    assert chord_top([BOS, RANGES["TEMPO"][0], p[5], d[1], s[0]], RANGES) == -1
    assert chord_top([BOS, RANGES["TEMPO"][0], p[5], d[1], vel], RANGES) == p[5]


@pytest.mark.parametrize("config", [TokenizerConfig(), TokenizerConfig(max_shift=8, pitch_min=40, velocity_levels=3)])
def test_rules_hold_the_grammar_and_the_vocabulary_ranges(config):
    tokenizer = Tokenizer(config)
    rules, ranges = Rules.of(tokenizer), tokenizer.vocab.kind_ranges()
    np.testing.assert_array_equal(rules.may_follow, grammar(tokenizer))
    assert range(rules.pitch_lo, rules.pitch_hi) == ranges["PITCH"]
    assert range(rules.shift_lo, rules.shift_hi) == ranges["SHIFT"]
    assert range(rules.velocity_lo, rules.velocity_hi) == ranges["VELOCITY"]


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0, 0.0, -1.0, math.nan, math.inf, -math.inf, "1.0", None])
def test_settings_reject_bad_temperature(temperature):
    with pytest.raises(ValueError):
        SamplingSettings(temperature=temperature)


@pytest.mark.parametrize("top_p", [0, 0.0, -0.1, 1.0000001, 2.0, math.nan, math.inf, None])
def test_settings_reject_bad_top_p(top_p):
    with pytest.raises(ValueError):
        SamplingSettings(top_p=top_p)


@pytest.mark.parametrize("field", ["max_notes", "max_steps", "max_tokens"])
def test_settings_reject_non_positive_limits(field):
    with pytest.raises(ValueError):
        SamplingSettings(**{field: 0})

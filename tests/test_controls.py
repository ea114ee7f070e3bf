"""midigen.controls and the measures of midigen.stats: keys, control vectors, continuation scores, and
a model that reads controls (training, sampling, older checkpoints)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import random_checkpoint

from midigen import checkpoint
from midigen.controls import (
    CONTROL_SIZE,
    DENSITY_LEVELS,
    KEY_NAMES,
    MAX_PIECES,
    TRANSPOSE,
    ControlLevels,
    Controls,
    TokenNotes,
    key_index,
    mean_loudness,
)
from midigen.evaluate import is_drone
from midigen.generate import KEY_STRENGTH, GenerationRequest, Generator
from midigen.sample import NumbaSampler, SamplingSettings, TorchSampler
from midigen.stats import (
    Character,
    correlation,
    distances,
    duration_profile,
    estimate_key,
    floor_to_ceiling,
    ngram_share,
    notes_per_beat,
    overlap,
    repeated_bars,
)
from midigen.tokenizer import Note, Score, Tokenizer

TOKENIZER = Tokenizer()
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 11)


def scale_score(tonic: int, steps=MAJOR_SCALE, bars: int = 4, octave: int = 60, velocity: int = 80) -> Score:
    """A tonic triad held for a beat, then the scale in eighths, ``bars`` times (12 steps per beat)."""
    notes, start = [], 0
    for _ in range(bars):
        for degree in (0, steps[2], steps[4]):
            notes.append(Note(octave + tonic + degree, start, 12, velocity))
        start += 12
        for degree in steps + (12,):
            notes.append(Note(octave + tonic + degree, start, 6, velocity))
            start += 6
    return Score(notes, 120.0)


# -- keys ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tonic", range(12))
def test_scales_are_estimated_in_their_key(tonic):
    for steps, key in ((MAJOR_SCALE, tonic), (HARMONIC_MINOR, 12 + tonic)):
        notes = scale_score(tonic, steps).notes
        assert estimate_key(duration_profile([n.pitch for n in notes], [n.duration for n in notes])) == key


def test_key_names_parse_to_their_index():
    assert [key_index(name) for name in KEY_NAMES] == list(range(24))
    assert key_index("f# minor") == key_index("Gb minor") == 18
    assert key_index(" Bb major ") == 10
    for bad in ("H major", "C", "C dorian", "", "auto"):
        with pytest.raises(ValueError, match="key must be"):
            key_index(bad)


def test_duration_weights_the_profile():
    profile = duration_profile([60, 62], [3, 1])
    assert profile[0] == pytest.approx(0.75) and profile[2] == pytest.approx(0.25) and profile.sum() == 1


# -- the four measures and the floor-to-ceiling score ------------------------------------------


def test_distances_between_passages():
    c_major = Character.of(scale_score(0), 12)
    assert distances(c_major, c_major) == pytest.approx({"key": 0, "register": 0, "density": 0, "loudness": 0})
    moved = Character.of(scale_score(6, octave=72, velocity=100), 12)
    d = distances(c_major, moved)
    assert d["key"] > 1.0  # a tritone away: the profiles are anti-correlated
    assert d["register"] == pytest.approx(18)
    assert d["loudness"] == pytest.approx(20)
    assert d["density"] == pytest.approx(0)
    twice = Score([Note(n.pitch, n.start // 2, n.duration, n.velocity) for n in scale_score(0).notes])
    assert distances(c_major, Character.of(twice, 12))["density"] == pytest.approx(math.log(2), rel=0.02)


def test_notes_per_beat():
    assert notes_per_beat([0, 12, 24, 36], 12) == pytest.approx(4 / 3)
    assert notes_per_beat([0, 0, 0], 12) == 3  # at least one beat
    assert notes_per_beat([], 12) == 0


def test_overlap_of_two_samples_distributions():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 400), rng.normal(0, 1, 400)
    assert overlap(a, b) > 0.85 and overlap(a, b) == pytest.approx(overlap(b, a))
    assert overlap(a, rng.normal(3, 1, 400)) == pytest.approx(2 * 0.0668, abs=0.04)  # 2 Φ(-1.5) for normals 3 σ apart
    assert overlap(a, a + 100) == 0
    assert overlap([80, 80, 80], [80, 80]) == pytest.approx(1, abs=1e-3)  # constant samples: narrow peaks
    assert overlap([80, 80], [88, 88]) == 0
    # a constant sample against one mostly of that value: read with the other's spread, not as a needle
    assert overlap([0.5] * 24, [0.5] * 29 + [1.0] * 2) == pytest.approx(29 / 31, abs=0.03)
    assert math.isnan(overlap([1.0], [1.0, 2.0]))


def test_floor_to_ceiling_scores():
    assert floor_to_ceiling([1.0], [1.0], [3.0]) == 1
    assert floor_to_ceiling([3.0, 3.0], [1.0], [3.0]) == 0
    assert floor_to_ceiling([2.0], [1.0, 1.0], [3.0, 3.0]) == pytest.approx(0.5)
    assert floor_to_ceiling([0.0], [1.0], [3.0]) == pytest.approx(1.5)  # closer than the real continuation
    assert floor_to_ceiling([5.0], [1.0], [3.0]) == pytest.approx(-1)
    assert math.isnan(floor_to_ceiling([1.0], [2.0], [2.0]))


def test_ngram_share_sees_repetition():
    once = scale_score(0, bars=1)
    assert ngram_share(once) == 1
    assert ngram_share(scale_score(0, bars=8)) < 0.2


def test_a_drone_is_two_pitch_classes_most_of_the_time():
    fifth = np.zeros(12)
    fifth[[4, 11]] = 0.45, 0.4
    fifth[7] = 0.15
    assert is_drone(fifth)
    assert not is_drone(duration_profile([60, 62, 64, 65, 67, 69, 71], [12] * 7))


def test_repeated_bars_sees_loops_not_recurring_ideas():
    def bars(*pitches):  # one bar (48 steps) of four quarter notes per pitch
        return Score([Note(p + k, 48 * b + 12 * k, 12, 80) for b, p in enumerate(pitches) for k in range(4)], 120)

    assert repeated_bars(bars(60, 60, 60, 60), 12) == pytest.approx(3 / 4)
    assert repeated_bars(bars(60, 62, 60, 62), 12) == 0  # an idea comes back, but not bar after bar
    assert repeated_bars(bars(60), 12) == 0


# -- control vectors ---------------------------------------------------------------------------


def test_control_vector_layout():
    assert np.array_equal(Controls().vector(), np.zeros(CONTROL_SIZE))
    profile = tuple(np.eye(12)[2])
    v = Controls(profile, 72.0, 4.0, 112.0).vector()
    assert v[2] == 12 and v[:12].sum() == 12 and v[12] == 1
    assert v[13:15].tolist() == [1.0, 1.0]
    assert v[15:17].tolist() == [pytest.approx(0.5), 1.0]
    assert v[17:19].tolist() == [1.0, 1.0]
    assert Controls(mean_pitch=72.0).vector()[:13].sum() == 0  # unknown parts stay zero


def test_controls_of_a_score():
    score = scale_score(2, bars=2, velocity=100)
    c = Controls.of_score(score, 12)
    assert estimate_key(np.asarray(c.profile)) == 2
    assert c.mean_pitch == pytest.approx(np.mean([n.pitch for n in score.notes]))
    assert c.notes_per_beat == pytest.approx(notes_per_beat([n.start for n in score.notes], 12))
    assert c.mean_velocity == 100
    assert Controls.of_score(Score([]), 12) == Controls()


def test_token_notes_give_the_controls_of_the_decoded_notes():
    score = scale_score(5, bars=3, velocity=70)
    tokens = np.asarray(TOKENIZER.score_to_tokens(score))
    decoded = TOKENIZER.tokens_to_score(tokens)
    from_tokens = TokenNotes.of(tokens, TOKENIZER).controls(0, len(tokens), 12)
    expected = Controls.of_score(decoded, 12)
    assert np.allclose(from_tokens.vector(), expected.vector())
    # a slice of tokens: only the notes whose PITCH token lies inside
    notes = TokenNotes.of(tokens, TOKENIZER)
    middle = notes.index[10], notes.index[20]
    assert notes.controls(*middle, 12).mean_pitch == pytest.approx(np.mean(notes.pitch[10:20]))
    # levels can sound as a seed played them: the loudness is then measured as it will be heard
    level = TOKENIZER.velocity_level(70)
    heard = TokenNotes.of(tokens, TOKENIZER, sounding={level: 66, level + 1: 90})
    assert set(heard.velocity) == {66} and set(notes.velocity) == {TOKENIZER.level_velocity(level)}


def test_levels_rotate_key_profiles_and_name_densities():
    levels = ControlLevels()
    d_minor = levels.key_profile("D minor")
    assert estimate_key(np.asarray(d_minor)) == key_index("D minor")
    assert [levels.notes_per_beat(level) for level in DENSITY_LEVELS] == sorted(levels.density)
    with pytest.raises(ValueError, match="density must be"):
        levels.notes_per_beat("frantic")
    passages = [Controls.of_score(scale_score(t, bars=2), 12).replace(notes_per_beat=float(t + 1)) for t in range(12)]
    measured = ControlLevels.measure(passages)
    assert estimate_key(np.asarray(measured.major)) == 0
    assert measured.density[0] < measured.density[2] < measured.density[-1]
    assert ControlLevels.from_dict(measured.to_dict()) == measured
    assert ControlLevels.measure(iter(passages)) == measured  # read in one pass


def test_levels_keep_each_training_pieces_character():
    pieces = [Controls.of_score(scale_score(t, bars=2, octave=48 + 12 * (t % 2), velocity=20 + 8 * t), 12)
              for t in range(12)]
    levels = ControlLevels.measure(pieces, pieces)
    assert len(levels.pieces) == 12 and ControlLevels.from_dict(levels.to_dict()) == levels
    assert levels.pieces[3][12:] == (pytest.approx(pieces[3].mean_pitch, abs=1e-4), 44)
    assert len(ControlLevels.measure(pieces, pieces * 200).pieces) <= MAX_PIECES  # a big collection: spread evenly


def test_levels_keep_how_loud_the_training_pieces_play_each_level():
    # [sum of velocities, notes] per level, as prepare records them; a piece recorded before that: []
    quiet, loud = [[0, 0]] * 5 + [[3 * 80, 3], [0, 0], [0, 0]], [[0, 0]] * 5 + [[92, 1], [110, 1], [0, 0]]
    assert mean_loudness([quiet, loud, []]) == (0, 0, 0, 0, 0, 83, 110, 0)
    assert mean_loudness([[]]) == ()
    pieces = [Controls.of_score(scale_score(t), 12) for t in range(3)]
    levels = ControlLevels.measure(pieces, pieces, [quiet, loud])
    assert levels.loudness == (0, 0, 0, 0, 0, 83, 110, 0) and ControlLevels.from_dict(levels.to_dict()) == levels


def test_new_music_plays_each_level_as_the_seed_or_else_the_training_pieces_do(shipped_generator):
    trained = shipped_generator.levels.loudness  # game piano: level 7 at 126 on average, not its middle 120
    assert len(trained) == 8 and trained[7] > 120
    assert shipped_generator.played({6: 100}) == {**dict(enumerate(trained)), 6: 100}
    (piece,) = shipped_generator.generate(GenerationRequest(seconds=20, random_seed=3))
    assert {n.velocity for n in piece.continuation.notes} <= set(trained)
    seed_score = scale_score(2, bars=2, velocity=100)  # level 6, played at 100
    request = GenerationRequest(notes=60, seconds=None, random_seed=3, continuation_only=True)
    (continued,) = shipped_generator.continue_score(request, seed_score)
    assert {n.velocity for n in continued.continuation.notes} <= {100} | set(trained) - {trained[6]}


def test_a_character_is_a_training_piece_moved_to_another_key():
    piece = Controls.of_score(scale_score(2, bars=2, velocity=96), 12)  # D major
    levels = ControlLevels(pieces=((*piece.profile, piece.mean_pitch, piece.mean_velocity),))
    rng = np.random.Generator(np.random.PCG64(5))
    shifts = set()
    for _ in range(60):
        character = levels.character(rng)
        shift = round(character.mean_pitch - piece.mean_pitch)
        shifts.add(shift)
        assert estimate_key(np.asarray(character.profile)) == (2 + shift) % 12  # moved with the register
        assert character.mean_velocity == 96 and character.notes_per_beat is None  # density: the model's
    assert shifts == set(range(-TRANSPOSE, TRANSPOSE + 1))
    assert ControlLevels().character(rng) == Controls()  # weights trained before characters were kept


# -- a model that reads controls --------------------------------------------------------------


@pytest.fixture(scope="module")
def controlled():
    model, ck = random_checkpoint(random_seed=7, controls=CONTROL_SIZE)
    with torch.no_grad():  # random projections are small: make the control matter
        model.control.weight.mul_(20)
    ck.tensors = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    return model, ck


def test_the_control_changes_the_model_and_zero_means_none(controlled):
    model, _ = controlled
    tokens = torch.tensor([TOKENIZER.score_to_tokens(scale_score(0, bars=1))])
    plain = model(tokens)[0]
    zero = model(tokens, None, torch.zeros(1, CONTROL_SIZE))[0]
    asked = model(tokens, None, torch.from_numpy(Controls(mean_pitch=84.0).vector())[None])[0]
    assert torch.allclose(plain, zero)
    assert not torch.allclose(plain, asked, atol=1e-3)


def test_samplers_follow_the_control_alike(controlled):
    _, ck = controlled
    prompt = TOKENIZER.score_to_tokens(scale_score(0, bars=1), add_eos=False)
    settings = SamplingSettings(temperature=1.0, top_p=0.9, max_notes=30, max_tokens=150)
    numba, torch_sampler = NumbaSampler(ck, TOKENIZER, workers=1), TorchSampler(ck, TOKENIZER, "cpu")
    control = Controls(tuple(np.eye(12)[6]), 84.0, 6.0, 30.0).vector()
    asked = numba.sample(prompt, settings, 2, 11, control=control)
    assert asked == torch_sampler.sample(prompt, settings, 2, 11, control=control)
    assert asked != numba.sample(prompt, settings, 2, 11)
    unknown = numba.sample(prompt, settings, 2, 11, control=np.zeros(CONTROL_SIZE))
    assert unknown == numba.sample(prompt, settings, 2, 11)


def test_states_are_fed_the_control_alike(controlled):
    _, ck = controlled
    prompt = TOKENIZER.score_to_tokens(scale_score(0, bars=1), add_eos=False)
    settings = SamplingSettings(temperature=1.0, top_p=0.9, max_notes=12, max_tokens=150)
    control = Controls(tuple(np.eye(12)[6]), 84.0, 6.0, 30.0).vector()
    numba, torch_sampler = NumbaSampler(ck, TOKENIZER, workers=1), TorchSampler(ck, TOKENIZER, "cpu")
    for sampler in (numba, torch_sampler):
        rows, states = sampler.sample_states(prompt, settings, 2, 11, control=control)
        for row, state in zip(rows, states, strict=True):
            np.testing.assert_allclose(state, numba.advance(None, prompt + row, control), atol=1e-4)
            assert not np.allclose(state, numba.advance(None, prompt + row), atol=1e-3)
        (a,), (state,) = sampler.sample_states(prompt, settings, 1, 12, control=control)
        going_on = sampler.sample(prompt + a, settings, 2, 13, control=control, state=state)
        assert going_on == sampler.sample(prompt + a, settings, 2, 13, control=control)


def test_generator_turns_choices_into_controls(controlled, tmp_path):
    _, ck = controlled
    ck.info = {"controls": ControlLevels().to_dict()}
    checkpoint.save(ck, tmp_path / "controlled")
    generator = Generator(tmp_path / "controlled", "cpu")
    seed_score = scale_score(2, bars=2, octave=48, velocity=40)
    auto = generator.controls(GenerationRequest(), seed_score)
    measured = Controls.of_score(seed_score, 12)
    assert auto.replace(profile=None) == measured.replace(profile=None)
    # the key is the seed's, estimated, given as the clear profile of that key
    d_major = Controls(ControlLevels().key_profile("D major"))
    assert auto.profile == d_major.profile and auto.key_strength == 1
    named = generator.controls(GenerationRequest(key="D major"), seed_score)
    assert named.profile == d_major.profile and named.key_strength == KEY_STRENGTH > 1
    assert np.allclose(named.vector()[:12], KEY_STRENGTH * d_major.vector()[:12])
    assert estimate_key(np.asarray(auto.profile)) == estimate_key(np.asarray(measured.profile)) == 2
    chosen = generator.controls(GenerationRequest(key="F# minor", density="dense"), seed_score)
    assert estimate_key(np.asarray(chosen.profile)) == key_index("F# minor")
    assert chosen.notes_per_beat == ControlLevels().density[-1] and chosen.mean_pitch == auto.mean_pitch
    assert generator.controls(GenerationRequest(key="free"), seed_score).profile is None
    assert generator.controls(GenerationRequest(), Score([])) == Controls()
    # from scratch: a training piece's character (none kept here), with the key and density named
    assert generator.character(GenerationRequest(), 3) == Controls()
    scratch = generator.character(GenerationRequest(key="D major", density="dense"), 3)
    assert scratch.profile == d_major.profile and scratch.notes_per_beat == ControlLevels().density[-1]
    a = generator.generate(GenerationRequest(notes=20, seconds=None, random_seed=3, key="C major"))[0]
    b = generator.generate(GenerationRequest(notes=20, seconds=None, random_seed=3, key="F# major"))[0]
    assert a.tokens != b.tokens


def test_request_checks_key_and_density():
    with pytest.raises(ValueError, match="key must be"):
        GenerationRequest(key="Z major")
    with pytest.raises(ValueError, match="density must be"):
        GenerationRequest(density="loud")
    GenerationRequest(key="free", density="sparse")


def test_checkpoints_without_controls_still_load_and_refuse_choices(random_model, tmp_path):
    base = tmp_path / "old"
    json_path = checkpoint.save(random_model[1], base)
    meta = json.loads(json_path.read_text())
    del meta["model"]["control_size"]  # as written before controls existed
    json_path.write_text(json.dumps(meta))
    generator = Generator(base, "cpu")
    assert generator.checkpoint.model_config.control_size == 0
    (result,) = generator.generate(GenerationRequest(notes=5, seconds=None, random_seed=1))
    assert len(result.continuation.notes) == 5
    with pytest.raises(ValueError, match="trained without key and density controls"):
        generator.generate(GenerationRequest(notes=5, seconds=None, key="D minor"))


# -- the shipped weights follow the key asked for ------------------------------------------------


def test_shipped_weights_write_in_the_key_asked_for(shipped_generator):
    keys = ["C major", "A minor", "Eb major", "F# minor", "G major", "D minor", "B major", "C minor"]
    found = []
    for i, key in enumerate(keys):
        (result,) = shipped_generator.generate(GenerationRequest(seconds=30, key=key, random_seed=i))
        found.append(estimate_key(duration_profile([n.pitch for n in result.continuation.notes],
                                                   [n.duration for n in result.continuation.notes])))
    assert sum(f == key_index(k) for f, k in zip(found, keys, strict=True)) >= 6, found


def test_shipped_weights_continue_in_the_seed_key(shipped_generator):
    seed_score = scale_score(2, bars=6)  # D major
    request = GenerationRequest(notes=150, seconds=None, random_seed=5, variations=4, continuation_only=True)
    results = shipped_generator.continue_score(request, seed_score)
    keys = [estimate_key(duration_profile([n.pitch for n in r.continuation.notes],
                                          [n.duration for n in r.continuation.notes])) for r in results]
    assert sum(k == key_index("D major") for k in keys) >= 3, keys


def test_continuations_keep_the_colour_of_a_modal_seed(shipped_generator, monkeypatch):
    """A dorian or lydian seed is estimated in a major or minor key; its continuation is held near the seed's own
    pitch classes too (``SEED_BALANCE``), not only near the key's typical ones."""
    from midigen import generate

    def closeness() -> float:
        found = []
        for steps, tonic in (((0, 2, 3, 5, 7, 9, 10), 2), ((0, 2, 4, 6, 7, 9, 11), 5), ((0, 2, 3, 5, 7, 9, 10), 9)):
            seed_score = scale_score(tonic, steps)
            request = GenerationRequest(notes=120, seconds=None, random_seed=5, variations=6, continuation_only=True)
            found += [correlation(duration_profile([n.pitch for n in r.continuation.notes],
                                                   [n.duration for n in r.continuation.notes]),
                                  duration_profile([n.pitch for n in seed_score.notes],
                                                   [n.duration for n in seed_score.notes]))
                      for r in shipped_generator.continue_score(request, seed_score)]
        return float(np.mean(found))

    held = closeness()
    monkeypatch.setattr(generate, "SEED_BALANCE", 0.0)  # the key's typical profile only
    assert held > 0.8 and held > closeness() + 0.05, held  # measured: 0.88 against 0.78


def test_a_short_seeds_few_pitch_classes_do_not_crowd_out_the_rest(shipped_generator):
    """A seed of one note struck four times is continued with its key's pitch classes, not mostly that note."""
    seed_score = Score([Note(60, 6 * i, 6, 90) for i in range(4)], 100.0)
    request = GenerationRequest(notes=150, seconds=None, random_seed=1, variations=8, continuation_only=True)
    top_two = [np.sort(duration_profile([n.pitch for n in r.continuation.notes],
                                        [n.duration for n in r.continuation.notes]))[-2:].sum()
               for r in shipped_generator.continue_score(request, seed_score)]
    assert np.mean(top_two) < 0.5, top_two  # measured: 0.42 (held near the seed's profile in full: 0.63)


def test_shipped_weights_from_scratch_keep_the_character_drawn(shipped_generator):
    request = GenerationRequest(seconds=20, random_seed=40, variations=6)
    correlations, register, loudness = [], [], []
    for row, result in enumerate(shipped_generator.generate(request)):
        character = shipped_generator.character(request, 40 + 1 + row)  # row r samples with random_seed + 1 + r
        notes = result.continuation.notes
        profile = duration_profile([n.pitch for n in notes], [n.duration for n in notes])
        correlations.append(correlation(profile, np.asarray(character.profile)))
        assert (profile > 0.02).sum() >= 6, row  # no drone: the key is kept through the controls only
        register.append(abs(np.mean([n.pitch for n in notes]) - character.mean_pitch))
        tok = shipped_generator.tokenizer  # the model is given velocities as their level's middle
        loudness.append(abs(np.mean([tok.level_velocity(tok.velocity_level(n.velocity)) for n in notes])
                            - character.mean_velocity))
    assert np.mean(correlations) > 0.5, correlations  # other pieces' profiles: about 0
    # register and loudness are given, not held: a piece may move around them as real pieces do
    assert np.mean(register) < 3 and max(register) < 6, register
    assert np.mean(loudness) < 10 and max(loudness) < 20, loudness


def test_continuations_hold_the_seeds_loudness(shipped_generator):
    seed_score = scale_score(2, bars=2, velocity=40)
    assert shipped_generator.held_loudness(shipped_generator.controls(GenerationRequest(), seed_score)) == 2
    assert shipped_generator.held_loudness(None) is None  # weights without controls

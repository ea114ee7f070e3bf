"""midigen.sample and midigen.kernels: the drawing rule, top-p, the compiled GRU, both samplers, states and bias."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import ROOT, SHOWCASE, make_midi, random_checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from midigen import checkpoint
from midigen.kernels import draw, feed, top_p_threshold
from midigen.rules import chord_top, grammar, grammar_violations
from midigen.sample import NumbaSampler, SamplingSettings, TorchSampler, sampling_tensors
from midigen.tokenizer import BOS, EOS, Note, Score, Tokenizer

TOKENIZER = Tokenizer()
V = TOKENIZER.vocab
RANGES = V.kind_ranges()
PROMPT = [BOS, V.encode("TEMPO", 10)]


def softmax(logits, allowed, temperature=1.0):
    z = np.where(allowed, np.asarray(logits, np.float64) / temperature, -np.inf)
    p = np.exp(z - z.max())
    return p / p.sum()


def nucleus(p, top_p):
    """Sort-based reference: the most probable tokens whose mass first reaches top_p, renormalised."""
    if top_p >= 1.0:
        return p / p.sum()
    order = np.argsort(-p, kind="stable")
    cumulative = np.cumsum(p[order])
    count = min(int(np.searchsorted(cumulative, top_p)) + 1, len(p))
    threshold = p[order][count - 1]
    kept = np.where(p >= threshold, p, 0.0)
    return kept / kept.sum()


def random_case(rng, size=None):
    size = size or int(rng.integers(2, 300))
    logits = rng.normal(0.0, 3.0, size)
    allowed = rng.random(size) < rng.uniform(0.05, 1.0)
    allowed[rng.integers(size)] = True
    return logits, allowed


# -- draw: the pure rule -----------------------------------------------------------------


def test_tiny_top_p_is_argmax():
    rng = np.random.default_rng(1)
    for _ in range(300):
        logits, allowed = random_case(rng)
        best = int(np.argmax(np.where(allowed, logits, -np.inf)))
        for u in (0.0, rng.random(), 0.999999):
            assert draw(logits, allowed, rng.uniform(0.3, 3.0), 1e-9, u) == best


def test_tiny_temperature_is_argmax():
    rng = np.random.default_rng(2)
    checked = 0
    for _ in range(300):
        logits, allowed = random_case(rng)
        masked = np.sort(np.where(allowed, logits, -np.inf))[::-1]
        if allowed.sum() > 1 and masked[0] - masked[1] < 0.01:
            continue  # a near tie: both are legitimately possible
        best = int(np.argmax(np.where(allowed, logits, -np.inf)))
        for top_p in (1.0, 0.95):
            assert draw(logits, allowed, 1e-4, top_p, rng.random()) == best
        checked += 1
    assert checked > 250


def test_full_top_p_is_inverse_cdf_sampling_over_allowed():
    rng = np.random.default_rng(3)
    for _ in range(500):
        logits, allowed = random_case(rng)
        temperature = rng.uniform(0.2, 2.5)
        u = rng.random()
        cdf = np.cumsum(softmax(logits, allowed, temperature))
        want = int(np.searchsorted(cdf, u * cdf[-1], side="right"))
        assert draw(logits, allowed, temperature, 1.0, u) == want


def test_disallowed_tokens_are_never_drawn():
    rng = np.random.default_rng(4)
    for _ in range(300):
        logits, allowed = random_case(rng)
        logits = np.where(allowed, logits, logits + 50.0)  # the forbidden tokens are the likely ones
        for u in (0.0, 1e-12, rng.random(), 1 - 1e-12):
            for top_p in (1.0, 0.9, 0.5):
                assert allowed[draw(logits, allowed, 1.0, top_p, u)]


def test_nothing_allowed_draws_minus_one():
    assert draw(np.zeros(5), np.zeros(5, dtype=bool), 1.0, 0.9, 0.5) == -1


@pytest.mark.parametrize("top_p", [1.0, 0.8, 0.5])
def test_frequencies_match_softmax(top_p):
    logits = np.array([2.0, 1.0, 0.5, 0.0, 4.0, -1.0, 3.0, 0.2])
    allowed = np.array([True, True, True, False, False, True, True, True])
    temperature = 0.8
    want = nucleus(softmax(logits, allowed, temperature), top_p)
    count = 20_000
    # random uniforms: a chi-square test (4 to 6 degrees of freedom; 35 is far beyond the 99.99% quantile)
    uniform = np.random.default_rng(5).random(count)
    drawn = np.bincount([draw(logits, allowed, temperature, top_p, u) for u in uniform], minlength=len(logits))
    assert drawn[want == 0].sum() == 0
    expected = count * want[want > 0]
    assert ((drawn[want > 0] - expected) ** 2 / expected).sum() < 35.0
    # evenly spread uniforms: every token is drawn its exact share, to within one draw
    grid = (np.arange(count) + 0.5) / count
    drawn = np.bincount([draw(logits, allowed, temperature, top_p, u) for u in grid], minlength=len(logits))
    np.testing.assert_allclose(drawn, count * want, atol=1.01)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weights=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=60).filter(lambda w: sum(w) > 1e-6),
       top_p=st.one_of(st.floats(1e-6, 1.0), st.sampled_from([0.5, 0.9, 0.95, 1.0])))
def test_top_p_threshold_matches_sorting(weights, top_p):
    p = np.asarray(weights) / np.sum(weights)
    got = top_p_threshold(p, top_p)
    if top_p >= 1.0:
        assert got == 0.0
        return
    ordered = np.sort(p)[::-1]
    cumulative = np.cumsum(ordered)
    reference = ordered[min(int(np.searchsorted(cumulative, top_p)), len(p) - 1)]
    # the kept set reaches top_p ...
    assert p[p >= got].sum() >= top_p - 1e-9
    if np.min(np.abs(cumulative - top_p)) > 1e-9:  # away from float ties at the boundary:
        # ... and is the smallest such set (up to the bisection's resolution)
        assert reference - p.max() * 2.0**-30 <= got <= reference
        assert p[p > got + p.max() * 2.0**-30].sum() < top_p


# -- sampled streams obey the rules ------------------------------------------------------


def assert_chords_ascend(tokens):
    top = -1
    for t in tokens:
        if t in RANGES["SHIFT"] or t in RANGES["TEMPO"]:
            top = -1
        elif t in RANGES["PITCH"]:
            assert t > top, "chord notes must be written low to high"
            top = t


def test_sampled_tokens_follow_the_grammar(random_model):
    sampler = NumbaSampler(random_model[1], TOKENIZER)
    may_follow = grammar(TOKENIZER)
    rows = sampler.sample(PROMPT, SamplingSettings(1.5, 1.0, max_notes=10**6, max_tokens=400), 4, 17)
    rows += sampler.sample(PROMPT, SamplingSettings(0.7, 0.9, max_notes=10**6, max_tokens=400), 4, 18)
    assert sum(len(r) for r in rows) > 400
    for row in rows:
        assert grammar_violations(PROMPT + row, may_follow) == 0
        assert_chords_ascend(PROMPT + row)
        assert TOKENIZER.count_notes(row) > 0


def test_continuation_keeps_the_prompt_chord_ascending(random_model):
    prompt = TOKENIZER.score_to_tokens(Score([Note(60, 0, 12), Note(64, 0, 12), Note(100, 0, 12)]), add_eos=False)
    sampler = NumbaSampler(random_model[1], TOKENIZER)
    rows = sampler.sample(prompt, SamplingSettings(1.0, 1.0, max_tokens=60), 8, 3)
    in_chord = 0
    for row in rows:
        assert grammar_violations(prompt + row, grammar(TOKENIZER)) == 0
        assert_chords_ascend(prompt + row)
        for t in row:
            if t in RANGES["SHIFT"]:
                break
            if t in RANGES["PITCH"]:
                in_chord += 1
                assert V.decode(t)[1] > 100
    assert in_chord > 0  # some rows added to the prompt's last chord


# -- the compiled GRU against torch ---------------------------------------------------------


def scaled_random_model(layers: int):
    """A random GRU with weights scaled up, so agreement is not won by near-zero activations:
    (the torch network as the samplers see it, float16 matrices included; its checkpoint)."""
    _, ck = random_checkpoint(random_seed=10 + layers, hidden=24, layers=layers, embedding=12)
    ck.tensors = {name: 3.0 * value for name, value in ck.tensors.items()}
    return TorchSampler(ck, TOKENIZER, "cpu").model, ck


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_compiled_gru_state_matches_torch(layers):
    model, ck = scaled_random_model(layers)
    sampler = NumbaSampler(ck, TOKENIZER)
    tokens = TOKENIZER.encode(make_midi(SHOWCASE))
    for length in (1, 2, 7, len(tokens)):
        prefix = tokens[:length]
        h = np.zeros((layers, 2, 24), dtype=np.float32)
        feed(np.asarray(prefix, dtype=np.int64), sampler.weights, h)
        with torch.no_grad():
            _, state = model(torch.tensor([prefix]))
        for row in range(2):
            np.testing.assert_allclose(h[:, row], state[:, 0].numpy(), atol=1e-4, rtol=1e-4)
        assert np.abs(state.numpy()).max() > 0.1


@pytest.mark.parametrize("layers", [1, 2])
def test_compiled_head_picks_torch_argmax(layers):
    """With a vanishing top-p the sampler takes the most likely allowed token: torch's logits must agree."""
    model, ck = scaled_random_model(layers)
    sampler = NumbaSampler(ck, TOKENIZER)
    may_follow = grammar(TOKENIZER)
    tokens = TOKENIZER.encode(make_midi(SHOWCASE), add_eos=False)
    checked = 0
    for length in range(2, len(tokens) + 1):
        prefix = tokens[:length]
        allowed = may_follow[prefix[-1]].copy()
        top = chord_top(prefix, RANGES)
        allowed[RANGES["PITCH"].start : max(top + 1, RANGES["PITCH"].start)] = False
        with torch.no_grad():
            logits = model(torch.tensor([prefix]))[0][0, -1].double().numpy()
        masked = np.sort(np.where(allowed, logits, -np.inf))[::-1]
        if allowed.sum() > 1 and masked[0] - masked[1] < 1e-3:
            continue  # a near tie
        (got,) = sampler.sample(prefix, SamplingSettings(top_p=1e-9, max_tokens=1), 1, length)
        assert got == [int(np.argmax(np.where(allowed, logits, -np.inf)))]
        checked += 1
    assert checked > 0.9 * (len(tokens) - 1)


def test_sampler_from_a_saved_checkpoint_matches_the_in_memory_one(random_model, random_weights):
    settings_ = SamplingSettings(max_tokens=80)
    a = NumbaSampler(random_model[1], TOKENIZER).sample(PROMPT, settings_, 2, 9)
    b = NumbaSampler(checkpoint.load(random_weights), TOKENIZER).sample(PROMPT, settings_, 2, 9)
    assert a == b


def test_sampling_tensors_round_only_the_matrices_read_every_step(random_model):
    ck = random_model[1]
    rounded = sampling_tensors(ck)
    assert rounded.keys() == ck.tensors.keys()
    for name, value in rounded.items():
        original = np.asarray(ck.tensors[name], dtype=np.float32)
        assert value.dtype == np.float32 and value.shape == original.shape
        if name.startswith(("gru.weight_", "head.weight")):
            np.testing.assert_array_equal(value, value.astype(np.float16).astype(np.float32))
            np.testing.assert_allclose(value, original, rtol=2**-11, atol=2**-24)
            assert not np.array_equal(value, original)
        else:
            np.testing.assert_array_equal(value, original)


def test_rows_split_across_threads_match_one_thread(random_model):
    """Variations are independent rows: splitting them across threads only changes float rounding."""
    s = SamplingSettings(max_tokens=120)
    one = NumbaSampler(random_model[1], TOKENIZER, workers=1).sample(PROMPT, s, 4, 21)
    for workers in (2, 3, 4):
        split = NumbaSampler(random_model[1], TOKENIZER, workers=workers).sample(PROMPT, s, 4, 21)
        assert [row[:50] for row in split] == [row[:50] for row in one]
        agree = sum(a == b for x, y in zip(one, split, strict=True) for a, b in zip(x, y, strict=False))
        assert agree >= 0.9 * sum(len(row) for row in one)


# -- reproducibility and stopping rules -----------------------------------------------------


@pytest.fixture(scope="module")
def safe_checkpoint():
    """A random model that never changes velocity, so it cannot reach the dead end of
    test_no_dead_end_after_the_top_key (VELOCITY after a chord topped by the highest key)."""
    _, ck = random_checkpoint(random_seed=77)
    ck.tensors["head.bias"] = ck.tensors["head.bias"].copy()
    ck.tensors["head.bias"][RANGES["VELOCITY"].start : RANGES["VELOCITY"].stop] -= 60.0
    return ck


def test_same_seed_same_tokens_different_seed_different(random_model):
    sampler = NumbaSampler(random_model[1], TOKENIZER)
    s = SamplingSettings(max_tokens=150)
    first = sampler.sample(PROMPT, s, 1, 123)
    assert NumbaSampler(random_model[1], TOKENIZER).sample(PROMPT, s, 1, 123) == first
    assert sampler.sample(PROMPT, s, 1, 124) != first
    assert len(first[0]) > 10


def test_variations_are_each_reproducible_and_differ(random_model):
    sampler = NumbaSampler(random_model[1], TOKENIZER)
    s = SamplingSettings(max_tokens=100)
    rows = sampler.sample(PROMPT, s, 3, 5)
    assert len(rows) == 3
    assert sampler.sample(PROMPT, s, 3, 5) == rows
    assert rows[0] != rows[1] and rows[1] != rows[2] and rows[0] != rows[2]


@pytest.mark.parametrize("count", [1, 7, 40])
def test_max_notes(safe_checkpoint, count):
    sampler = NumbaSampler(safe_checkpoint, TOKENIZER)
    rows = sampler.sample(PROMPT, SamplingSettings(max_notes=count, max_tokens=4096), 4, count)
    for row in rows:
        assert TOKENIZER.count_notes(row) == count
        assert row[-1] in RANGES["DURATION"]  # the last note is complete
    # notes of the prompt do not count
    prompt = TOKENIZER.score_to_tokens(Score([Note(60, 0, 12), Note(64, 12, 12)]), add_eos=False)
    for row in sampler.sample(prompt, SamplingSettings(max_notes=count, max_tokens=4096), 2, 1):
        assert TOKENIZER.count_notes(row) == count


def shifted(tokens) -> int:
    return sum(V.decode(t)[1] for t in tokens if t in RANGES["SHIFT"])


@pytest.mark.parametrize("position", [0, 40])
def test_max_steps(safe_checkpoint, position):
    sampler = NumbaSampler(safe_checkpoint, TOKENIZER)
    limit, max_shift = 120, TOKENIZER.config.max_shift
    rows = sampler.sample(PROMPT, SamplingSettings(max_notes=10**6, max_steps=limit, max_tokens=4096), 4, 8,
                          position=position)
    for row in rows:
        assert len(row) < 4096
        assert position + shifted(row) < limit
        assert position + shifted(row) >= limit - max_shift  # it stopped because the next shift crossed it


def test_max_tokens(safe_checkpoint):
    sampler = NumbaSampler(safe_checkpoint, TOKENIZER)
    rows = sampler.sample(PROMPT, SamplingSettings(max_notes=10**6, max_tokens=37), 3, 2)
    assert [len(r) for r in rows] == [37, 37, 37]


# -- the torch sampler on the CPU ------------------------------------------------------------


def test_torch_sampler_matches_numba(safe_checkpoint):
    numba_sampler = NumbaSampler(safe_checkpoint, TOKENIZER)
    torch_sampler = TorchSampler(safe_checkpoint, TOKENIZER, "cpu")
    s = SamplingSettings(temperature=1.0, top_p=0.95, max_notes=10**6, max_tokens=120)
    agree = total = 0
    for random_seed in (0, 1, 2):
        a = numba_sampler.sample(PROMPT, s, 3, random_seed)
        b = torch_sampler.sample(PROMPT, s, 3, random_seed)
        for x, y in zip(a, b, strict=True):
            assert x[:50] == y[:50]
            agree += sum(i == j for i, j in zip(x, y, strict=False))
            total += max(len(x), len(y))
    assert agree >= 0.9 * total


def test_torch_sampler_stopping_rules(safe_checkpoint):
    torch_sampler = TorchSampler(safe_checkpoint, TOKENIZER, "cpu")
    for row in torch_sampler.sample(PROMPT, SamplingSettings(max_notes=9, max_tokens=2000), 2, 4):
        assert TOKENIZER.count_notes(row) == 9 and row[-1] in RANGES["DURATION"]
    for row in torch_sampler.sample(PROMPT, SamplingSettings(max_notes=10**6, max_steps=90), 2, 4):
        assert 90 - TOKENIZER.config.max_shift <= shifted(row) < 90
        assert grammar_violations(PROMPT + row, grammar(TOKENIZER)) == 0


# -- the chord rule can paint the sampler into a corner ----------------------------------------


@pytest.fixture(scope="module")
def top_key_checkpoint():
    """A random GRU whose head favours the top key and velocity changes (a real, if odd, model)."""
    _, ck = random_checkpoint(random_seed=5)
    bias = ck.tensors["head.bias"].copy()
    bias[RANGES["PITCH"][-1]] += 12.0
    bias[RANGES["VELOCITY"].start : RANGES["VELOCITY"].stop] += 8.0
    ck.tensors["head.bias"] = bias
    return ck


def test_no_dead_end_after_the_top_key(top_key_checkpoint):
    rows = NumbaSampler(top_key_checkpoint, TOKENIZER).sample(PROMPT, SamplingSettings(max_notes=10, max_tokens=400),
                                                              3, 0)
    assert [TOKENIZER.count_notes(r) for r in rows] == [10, 10, 10]


def test_torch_sampler_never_emits_pad(top_key_checkpoint):
    rows = TorchSampler(top_key_checkpoint, TOKENIZER, "cpu").sample(
        PROMPT, SamplingSettings(max_notes=10, max_tokens=60), 2, 0)
    assert all(0 not in row for row in rows)


@pytest.mark.parametrize("edges", [{"temperature": 1e-6, "top_p": 1.0, "max_tokens": 40},
                                   {"temperature": 5, "top_p": 1e-9, "max_notes": 1, "max_steps": 1, "max_tokens": 1}])
def test_settings_at_their_edges_sample(random_model, edges):
    for sampler in (NumbaSampler(random_model[1], TOKENIZER), TorchSampler(random_model[1], TOKENIZER, "cpu")):
        rows = sampler.sample(PROMPT, SamplingSettings(**edges), 2, 3)
        for row in rows:
            assert 1 <= len(row) <= edges["max_tokens"]
            assert grammar_violations(PROMPT + row, grammar(TOKENIZER)) == 0


def test_the_cpu_sampler_needs_no_torch(random_weights):
    code = ("import sys; from midigen import checkpoint; from midigen.sample import NumbaSampler, SamplingSettings; "
            "from midigen.tokenizer import BOS, Tokenizer; "
            f"sampler = NumbaSampler(checkpoint.load({str(random_weights)!r}), Tokenizer()); "
            "print(len(sampler.sample([BOS], SamplingSettings(max_tokens=5), 2, 1)), 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "False"]


# -- going on from a state; a bias on the logits ----------------------------------------------------


def samplers(ck):
    return NumbaSampler(ck, TOKENIZER), TorchSampler(ck, TOKENIZER, "cpu")


def stop_reason(row, s: SamplingSettings, position: int = 0) -> str:
    if len(row) == s.max_tokens:
        return "max_tokens"
    if TOKENIZER.count_notes(row) == s.max_notes and row[-1] in RANGES["DURATION"]:
        return "max_notes"
    assert position + shifted(row) >= s.max_steps - TOKENIZER.config.max_shift  # the next shift would cross it
    return "max_steps"


def test_states_are_those_after_the_prompt_and_each_row(safe_checkpoint):
    """Rows of one batch end at different steps, each for one of the three reasons: every row's state is
    the one reached by feeding the prompt and that row's tokens from zero."""
    s = SamplingSettings(max_notes=4, max_steps=80, max_tokens=10)
    for sampler in samplers(safe_checkpoint):
        reasons = set()
        for random_seed in (3, 4):
            rows, states = sampler.sample_states(PROMPT, s, 6, random_seed)
            assert states.shape == (6, 2, 32) and states.dtype == np.float32
            assert len({len(row) for row in rows}) > 1
            for row, state in zip(rows, states, strict=True):
                reasons.add(stop_reason(row, s))
                np.testing.assert_allclose(state, sampler.advance(None, PROMPT + row), atol=1e-4)
        assert reasons == {"max_notes", "max_steps", "max_tokens"}


def test_a_row_that_keeps_no_token_ends_in_the_prompts_state(safe_checkpoint):
    """Nothing may follow EOS: the compiled loop stops every row before its first token."""
    sampler = NumbaSampler(safe_checkpoint, TOKENIZER)
    prompt = PROMPT + [V.encode("PITCH", 60), V.encode("DURATION", 6), EOS]
    after = sampler.advance(None, prompt)
    for state in (None, after):
        rows, states = sampler.sample_states(prompt, SamplingSettings(max_tokens=20), 3, 2, state=state)
        assert rows == [[], [], []]
        for row_state in states:
            np.testing.assert_allclose(row_state, after, atol=1e-4)


def test_going_on_from_a_state_is_going_on_from_the_whole_prompt(safe_checkpoint):
    first = SamplingSettings(max_notes=6, max_tokens=200)
    then = SamplingSettings(max_notes=8, max_steps=200, max_tokens=200)
    for sampler in samplers(safe_checkpoint):
        (a,), states = sampler.sample_states(PROMPT, first, 1, 7)
        prompt = PROMPT + a
        from_state, after = sampler.sample_states(prompt, then, 3, 8, 50, state=states[0])
        assert from_state == sampler.sample(prompt, then, 3, 8, 50)
        assert all(len(row) > 5 for row in from_state)
        for row, state in zip(from_state, after, strict=True):
            np.testing.assert_allclose(state, sampler.advance(None, prompt + row), atol=1e-4)
        # tokens the caller appends itself are fed with advance
        added = [V.encode("SHIFT", 6), V.encode("PITCH", 40), V.encode("DURATION", 12)]
        state = sampler.advance(after[1], added)
        prompt = prompt + from_state[1] + added
        assert sampler.sample(prompt, then, 2, 9, state=state) == sampler.sample(prompt, then, 2, 9)


def test_torch_sampler_matches_numba_from_a_state(safe_checkpoint):
    numba_sampler, torch_sampler = samplers(safe_checkpoint)
    s = SamplingSettings(temperature=1.0, top_p=0.95, max_notes=10**6, max_tokens=80)
    (a,), (state,) = numba_sampler.sample_states(PROMPT, SamplingSettings(max_notes=5), 1, 1)
    np.testing.assert_allclose(torch_sampler.advance(None, PROMPT + a), state, atol=1e-4)
    for random_seed in (0, 1):
        x = numba_sampler.sample(PROMPT + a, s, 3, random_seed, state=state)
        y = torch_sampler.sample(PROMPT + a, s, 3, random_seed, state=state)
        assert [row[:50] for row in x] == [row[:50] for row in y]
        assert x != numba_sampler.sample(PROMPT + a, s, 3, random_seed, state=np.zeros_like(state))  # the state is read


def test_advance_in_two_parts_is_advance_in_one(random_model):
    tokens = TOKENIZER.encode(make_midi(SHOWCASE), add_eos=False)
    a, b = tokens[:9], tokens[9:13]
    numba_sampler, torch_sampler = samplers(random_model[1])
    whole = numba_sampler.advance(None, a + b)
    assert whole.shape == (2, 32) and np.abs(whole).max() > 0.1
    for sampler in (numba_sampler, torch_sampler):
        np.testing.assert_allclose(sampler.advance(sampler.advance(None, a), b), whole, atol=1e-4)
        np.testing.assert_allclose(sampler.advance(None, a + b), whole, atol=1e-4)
        np.testing.assert_array_equal(sampler.advance(whole, []), whole)
    assert not np.allclose(numba_sampler.advance(None, b), whole, atol=1e-3)


def test_a_large_negative_bias_means_never_drawn(safe_checkpoint):
    s = SamplingSettings(max_notes=10**6, max_tokens=150)
    for sampler in samplers(safe_checkpoint):
        rows = sampler.sample(PROMPT, s, 3, 4)
        favourite = int(np.bincount(np.concatenate(rows)).argmax())
        bias = np.zeros(len(V), np.float32)
        bias[favourite] = -1e4
        rows = sampler.sample(PROMPT, s, 3, 4, bias=bias)
        assert sum(len(row) for row in rows) == 3 * 150
        assert all(favourite not in row for row in rows)
        for row in rows:
            assert grammar_violations(PROMPT + row, grammar(TOKENIZER)) == 0


def test_a_large_positive_bias_is_drawn_where_allowed(safe_checkpoint):
    s = SamplingSettings(temperature=0.05, max_notes=10**6, max_tokens=40)
    pitch, duration = V.encode("PITCH", 60), V.encode("DURATION", 6)
    bias = np.zeros(len(V), np.float32)
    bias[[pitch, duration]] = 1e3
    for sampler in samplers(safe_checkpoint):
        assert any(row[:2] != [pitch, duration] for row in sampler.sample(PROMPT, s, 4, 5))
        for row in sampler.sample(PROMPT, s, 4, 5, bias=bias):
            # after TEMPO a duration is not allowed, however favoured; then a chord cannot repeat its top note
            assert row[:2] == [pitch, duration]
            assert grammar_violations(PROMPT + row, grammar(TOKENIZER)) == 0
            assert_chords_ascend(PROMPT + row)


def test_torch_sampler_matches_numba_with_a_bias(safe_checkpoint):
    numba_sampler, torch_sampler = samplers(safe_checkpoint)
    s = SamplingSettings(temperature=1.0, top_p=0.95, max_notes=10**6, max_tokens=80)
    bias = np.random.default_rng(3).normal(0.0, 2.0, len(V)).astype(np.float32)
    for random_seed in (0, 1):
        x = numba_sampler.sample(PROMPT, s, 3, random_seed, bias=bias)
        y = torch_sampler.sample(PROMPT, s, 3, random_seed, bias=bias)
        assert [row[:50] for row in x] == [row[:50] for row in y]
        assert x != numba_sampler.sample(PROMPT, s, 3, random_seed)


def test_a_bias_or_state_of_the_wrong_shape_is_refused(random_model):
    for sampler in samplers(random_model[1]):
        with pytest.raises(ValueError, match="one value per token"):
            sampler.sample(PROMPT, SamplingSettings(max_tokens=4), 1, 0, bias=np.zeros(3))
        with pytest.raises(ValueError, match="shape"):
            sampler.sample(PROMPT, SamplingSettings(max_tokens=4), 1, 0, state=np.zeros((2, 31)))
        with pytest.raises(ValueError, match="shape"):
            sampler.advance(np.zeros(32), [BOS])

"""Sampling tokens from the GRU: temperature, top-p, grammar, stopping rules.

Two interchangeable samplers share one contract (``sample``):

* ``NumbaSampler`` runs the whole loop (GRU step, head, top-p, draw) in one
  compiled NumPy function on the CPU: no Python, no allocation, no sort per step,
  vectorized dot products and gates over float16 weights, only the logits the
  grammar allows, and variations spread over the cores.
* ``TorchSampler`` runs on CUDA (or any torch device): buffers are preallocated
  on the device and nothing is copied to the host until the loop ends.

Both use the weight matrices rounded to float16 (``sampling_tensors``), so they
sample the same model. Randomness comes from uniforms drawn up front with NumPy's PCG64 from the
random seed, so a seed gives the same tokens every time on the same machine.
Top-p keeps the most probable tokens whose mass reaches ``top_p``; its threshold
is found by bisection over probabilities instead of sorting.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .checkpoint import Checkpoint
from .tokenizer import Tokenizer

BISECTION_STEPS = 32


@dataclass(frozen=True)
class SamplingSettings:
    """What to sample: all checked on construction."""

    temperature: float = 1.0
    top_p: float = 0.95
    max_notes: int = 200
    max_steps: int = 2**31 - 1
    max_tokens: int = 4096

    def __post_init__(self):
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)):
            raise ValueError("temperature must be a finite number")
        if self.temperature <= 0:
            raise ValueError("temperature must be greater than 0")
        if not (isinstance(self.top_p, (int, float)) and math.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise ValueError("top_p must be in (0, 1]")
        if self.max_notes < 1 or self.max_steps < 1 or self.max_tokens < 1:
            raise ValueError("max_notes, max_steps and max_tokens must be positive")


def uniforms(random_seed: int, batch: int, length: int) -> np.ndarray:
    """The uniform draws of a whole run, one row per variation."""
    return np.random.Generator(np.random.PCG64(random_seed)).random((batch, length))


def grammar(tokenizer: Tokenizer, allow_eos: bool = False) -> np.ndarray:
    """``may_follow[previous, next]``: which token may come after which.

    BOS -> TEMPO -> (SHIFT | VELOCITY | PITCH)...; VELOCITY -> PITCH;
    PITCH -> DURATION; DURATION -> SHIFT | VELOCITY | PITCH (| EOS).
    """
    ranges = tokenizer.vocab.kind_ranges()
    size = len(tokenizer.vocab)
    may_follow = np.zeros((size, size), dtype=np.bool_)
    onset = [ranges["SHIFT"], ranges["VELOCITY"], ranges["PITCH"]]

    def allow(previous: range | list, following: list[range]):
        for kind in following:
            may_follow[np.ix_(list(previous), list(kind))] = True

    allow([1], [ranges["TEMPO"]])
    allow(ranges["TEMPO"], onset)
    allow(ranges["SHIFT"], onset)
    allow(ranges["VELOCITY"], [ranges["PITCH"]])
    allow(ranges["PITCH"], [ranges["DURATION"]])
    allow(ranges["DURATION"], onset + ([[2]] if allow_eos else []))
    return may_follow


def grammar_violations(tokens, may_follow: np.ndarray) -> int:
    """Number of adjacent pairs the grammar does not allow."""
    tokens = np.asarray(tokens)
    return int((~may_follow[tokens[:-1], tokens[1:]]).sum()) if len(tokens) > 1 else 0


def chord_top(prompt: list[int], ranges: dict[str, range]) -> int:
    """Highest PITCH token of the prompt's last chord (-1 if it ended on a shift or has none)."""
    for token in reversed(prompt):
        if token in ranges["PITCH"]:
            return token
        if token in ranges["SHIFT"] or token in ranges["TEMPO"]:
            return -1
    return -1


def top_p_threshold(probs: np.ndarray, top_p: float) -> float:
    """Smallest probability kept by nucleus sampling (the bisection the samplers use)."""
    return _threshold(np.asarray(probs, dtype=np.float64), top_p)


# Compiled once and cached on disk; no bounds checks, and division by zero gives inf instead of raising.
# Reassociation lets LLVM vectorize the sums and fuse multiply-adds; inf and NaN keep their meaning.
JIT = {"cache": True, "nogil": True, "boundscheck": False, "error_model": "numpy",
       "fastmath": {"reassoc", "contract", "nsz", "arcp"}}


@njit(**JIT)
def _threshold(probs, top_p):
    if top_p >= 1.0:
        return 0.0
    low, high = 0.0, probs.max()
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        mass = 0.0
        for i in range(probs.shape[0]):  # branch-free, so it vectorizes
            mass += probs[i] if probs[i] >= middle else 0.0
        if mass >= top_p:
            low = middle
        else:
            high = middle
    smallest = high
    for i in range(probs.shape[0]):
        if low <= probs[i] < smallest:
            smallest = probs[i]
    return smallest


@njit(**JIT)
def _pick(values, temperature, top_p, u, probs):
    """Position drawn from softmax(values / T) restricted to the nucleus: the first position
    whose cumulative kept mass exceeds ``u`` times the kept mass (-1 if ``values`` is empty)."""
    count = values.shape[0]
    if count == 0:
        return -1
    probs = probs[:count]
    best = values.max()
    total = 0.0
    for i in range(count):
        probs[i] = math.exp((values[i] - best) / temperature)
        total += probs[i]
    for i in range(count):
        probs[i] /= total
    threshold = _threshold(probs, top_p)
    kept = 0.0
    for i in range(count):
        if probs[i] >= threshold:
            kept += probs[i]
    target = u * kept
    last = -1
    cumulative = 0.0
    for i in range(count):
        if probs[i] >= threshold and probs[i] > 0.0:
            cumulative += probs[i]
            last = i
            if cumulative > target:
                return i
    return last


def draw(logits: np.ndarray, allowed: np.ndarray, temperature: float, top_p: float, u: float) -> int:
    """One token from softmax(logits / T) over the ``allowed`` tokens and the nucleus (-1 if none is allowed)."""
    index = np.flatnonzero(allowed)
    values = np.asarray(logits, dtype=np.float64)[index]
    position = _pick(values, float(temperature), float(top_p), float(u), np.empty(len(index)))
    return int(index[position]) if position >= 0 else -1


@intrinsic
def _half(typingctx, bits):
    """The float32 value of IEEE half-precision ``bits`` (uint16): one F16C instruction per 8 values."""

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.uint16), codegen


def half_bits(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` rounded to float16, as the uint16 bit patterns the compiled loop reads."""
    return np.ascontiguousarray(np.asarray(matrix, dtype=np.float32).astype(np.float16).view(np.uint16))


ROUNDED = ("gru.weight_", "head.weight")  # the tensors read at every step


def sampling_tensors(checkpoint: Checkpoint) -> dict[str, np.ndarray]:
    """The checkpoint's tensors as both samplers use them: float32, with the weight matrices of the GRU
    and the head rounded to float16 values. Reading half the bytes per step is what makes the CPU loop
    fast; on the shipped model it changes the validation NLL by 5e-6 nats per token."""
    return {name: np.asarray(value, dtype=np.float32).astype(np.float16).astype(np.float32)
            if name.startswith(ROUNDED) else np.asarray(value, dtype=np.float32)
            for name, value in checkpoint.tensors.items()}


@njit(**JIT)
def _affine(weight, bias, x, out):
    """out = x @ weight.T + bias, ``weight`` stored (out features, in features) as in torch, in float16 bits.

    Rows of ``x`` go four at a time, then two, then one: each weight read feeds as many of them as it can.
    """
    b = 0
    while x.shape[0] - b >= 4:
        _affine4(weight, bias, x, out, b)
        b += 4
    if x.shape[0] - b >= 2:
        _affine2(weight, bias, x, out, b)
        b += 2
    if b < x.shape[0]:
        _affine1(weight, bias, x, out, b)


@njit(**JIT)
def _affine4(weight, bias, x, out, b):
    """Rows b..b+3 of ``x`` against two weight rows at a time (four rows are bound by arithmetic)."""
    count = weight.shape[0]
    x0, x1, x2, x3 = x[b], x[b + 1], x[b + 2], x[b + 3]
    for j in range(0, count, 2):
        i = min(j + 1, count - 1)  # an odd last row is paired with itself
        v, w = weight[j], weight[i]
        a0 = a1 = a2 = a3 = c0 = c1 = c2 = c3 = np.float32(0.0)
        for k in range(v.shape[0]):
            vk, wk = _half(v[k]), _half(w[k])
            y0, y1, y2, y3 = x0[k], x1[k], x2[k], x3[k]
            a0 += vk * y0
            a1 += vk * y1
            a2 += vk * y2
            a3 += vk * y3
            c0 += wk * y0
            c1 += wk * y1
            c2 += wk * y2
            c3 += wk * y3
        bj, bi = bias[j], bias[i]
        out[b, j], out[b + 1, j], out[b + 2, j], out[b + 3, j] = a0 + bj, a1 + bj, a2 + bj, a3 + bj
        out[b, i], out[b + 1, i], out[b + 2, i], out[b + 3, i] = c0 + bi, c1 + bi, c2 + bi, c3 + bi


@njit(**JIT)
def _affine2(weight, bias, x, out, b):
    """Rows b and b+1 of ``x``, one weight row at a time (measured faster here than two at a time)."""
    x0, x1 = x[b], x[b + 1]
    for j in range(weight.shape[0]):
        v = weight[j]
        a0 = a1 = np.float32(0.0)
        for k in range(v.shape[0]):
            vk = _half(v[k])
            a0 += vk * x0[k]
            a1 += vk * x1[k]
        out[b, j], out[b + 1, j] = a0 + bias[j], a1 + bias[j]


@njit(**JIT)
def _affine1(weight, bias, x, out, b, rows=None):
    """Row b of ``x``: out[b, j] = x[b] @ weight[r] + bias[r] with r = rows[j] (or j: every row).
    One row is bound by reading and converting the weights. ``rows is None`` compiles to its own loop."""
    count = weight.shape[0] if rows is None else rows.shape[0]
    xb = x[b]
    for j in range(count):
        r = j if rows is None else rows[j]
        v = weight[r]
        a = np.float32(0.0)
        for k in range(v.shape[0]):
            a += _half(v[k]) * xb[k]
        out[b, j] = a + bias[r]


# tanh as an odd rational function of degree 13/6 (Eigen's float tanh, within 3e-7 of the true value):
# branch-free, so the GRU update vectorizes where libm's scalar tanh and exp do not.
TANH_CLAMP = np.float32(7.90531110763549805)
TANH_P = tuple(np.float32(c) for c in (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
                                       5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
                                       4.89352455891786e-03))
TANH_Q = tuple(np.float32(c) for c in (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
                                       4.89352518554385e-03))
HALF = np.float32(0.5)


@njit(**JIT)
def _tanh(x):
    x = min(max(x, -TANH_CLAMP), TANH_CLAMP)
    x2 = x * x
    p = TANH_P[0]
    for c in TANH_P[1:]:
        p = p * x2 + c
    q = TANH_Q[0]
    for c in TANH_Q[1:]:
        q = q * x2 + c
    return x * p / q


@njit(**JIT)
def _sigmoid(x):
    return HALF + HALF * _tanh(HALF * x)


@njit(**JIT)
def _gru_update(gi, gh, h):
    """PyTorch's GRU cell update from input and hidden projections (r, z, n order)."""
    size = h.shape[1]
    for b in range(h.shape[0]):
        gib, ghb, hb = gi[b], gh[b], h[b]
        for j in range(size):
            r = _sigmoid(gib[j] + ghb[j])
            z = _sigmoid(gib[size + j] + ghb[size + j])
            n = _tanh(gib[2 * size + j] + r * ghb[2 * size + j])
            hb[j] = n + z * (hb[j] - n)


@njit(**JIT)
def _step(tokens, input_table, ih, ih_b, hh, hh_b, h, gi, gh):
    """Advance every layer's state ``h[layer]`` by one token per row."""
    for b in range(tokens.shape[0]):
        gi[b, :] = input_table[tokens[b]]
    for layer in range(h.shape[0]):
        if layer > 0:
            _affine(ih[layer - 1], ih_b[layer - 1], h[layer - 1], gi)
        _affine(hh[layer], hh_b[layer], h[layer], gh)
        _gru_update(gi, gh, h[layer])


@njit(**JIT)
def _prime(prompt, input_table, ih, ih_b, hh, hh_b, h):
    """Feed all prompt tokens but the last (its step happens in the sampling loop)."""
    gi = np.empty((h.shape[1], hh.shape[1]), dtype=np.float32)
    gh = np.empty_like(gi)
    token = np.empty(h.shape[1], dtype=np.int64)
    for t in range(prompt.shape[0] - 1):
        token[:] = prompt[t]
        _step(token, input_table, ih, ih_b, hh, hh_b, h, gi, gh)


@njit(**JIT)
def _sample_loop(
    last, input_table, ih, ih_b, hh, hh_b, head, head_b, h, may_follow, temperature, top_p, u,
    pitch_lo, pitch_hi, shift_lo, shift_hi, velocity_lo, velocity_hi, position, chord_top, max_notes, max_steps, out,
):
    """Sample up to out.shape[1] tokens per row; returns how many each row got.

    Chords are written from low to high: after PITCH p, lower or equal pitches are
    not allowed until the next SHIFT (``chord_top`` is the prompt's last chord top), nor is
    a VELOCITY when no higher pitch is left for it. A rest only ends a row after its first note.
    Only the logits of tokens a row may draw are computed.
    """
    batch, vocab = h.shape[1], head.shape[0]
    gi = np.empty((batch, hh.shape[1]), dtype=np.float32)
    gh = np.empty_like(gi)
    logits = np.empty((batch, vocab), dtype=np.float32)
    index = np.empty(vocab, dtype=np.int64)
    values = np.empty(vocab, dtype=np.float64)
    probs = np.empty(vocab, dtype=np.float64)
    token = np.full(batch, last, dtype=np.int64)
    notes = np.zeros(batch, dtype=np.int64)
    steps = np.full(batch, position, dtype=np.int64)
    lengths = np.zeros(batch, dtype=np.int64)
    done = np.zeros(batch, dtype=np.bool_)
    top = np.full(batch, chord_top, dtype=np.int64)
    for t in range(out.shape[1]):
        _step(token, input_table, ih, ih_b, hh, hh_b, h, gi, gh)
        for b in range(batch):
            if done[b]:
                continue
            n = 0
            for v in range(vocab):
                if (may_follow[token[b], v] and not pitch_lo <= v <= top[b]
                        and not (velocity_lo <= v < velocity_hi and top[b] >= pitch_hi - 1)):
                    index[n] = v
                    n += 1
            _affine1(head, head_b, h[h.shape[0] - 1], logits, b, index[:n])
            for j in range(n):
                values[j] = logits[b, j]
            choice = _pick(values[:n], temperature, top_p, u[b, t], probs)
            if choice < 0:
                done[b] = True
                continue
            choice = index[choice]
            if shift_lo <= choice < shift_hi:
                top[b] = -1
                steps[b] += choice - shift_lo + 1
                if steps[b] >= max_steps and notes[b] > 0:
                    done[b] = True
                    continue
            token[b] = choice
            out[b, t] = choice
            lengths[b] = t + 1
            if pitch_lo <= choice < pitch_hi:
                notes[b] += 1
                top[b] = choice
            if notes[b] >= max_notes and not (pitch_lo <= choice < pitch_hi):
                done[b] = True
        if done.all():
            break
    return lengths


def usable_cores() -> int:
    """CPUs this process may run on (a container may see more in ``os.cpu_count()``)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cache_aligned_zeros(shape: tuple[int, ...]) -> np.ndarray:
    """float32 zeros starting on a 64-byte cache line. The GRU state is read in 32-byte vectors at every
    step: from NumPy's 16-byte alignment, half of them would straddle two lines (about 20% slower)."""
    size = math.prod(shape)
    buffer = np.zeros(size + 16, dtype=np.float32)
    start = (-buffer.ctypes.data % 64) // 4
    return buffer[start : start + size].reshape(shape)


class NumbaSampler:
    """CPU sampler: the weights rearranged for the compiled loop, matrices in float16.

    Variations are independent rows: a batch is split across up to ``workers`` threads (the loop
    releases the GIL), so 4 variations on 2 cores cost about what 2 cost on one.
    """

    def __init__(self, checkpoint: Checkpoint, tokenizer: Tokenizer, workers: int | None = None):
        t = sampling_tensors(checkpoint)
        layers = checkpoint.model_config.num_layers
        hidden = checkpoint.model_config.hidden_size
        self.tokenizer = tokenizer
        self.input_table = np.ascontiguousarray(t["embedding.weight"] @ t["gru.weight_ih_l0"].T + t["gru.bias_ih_l0"])
        # controls enter as a constant input bias: W_ih (E[token] + P c) + b_ih = table[token] + W_ih P c
        self.control_bias = t["gru.weight_ih_l0"] @ t["control.weight"] if "control.weight" in t else None
        # weights keep torch's (out features, in features) layout: each output is a dot product over one row
        self.ih = half_bits(np.stack([t[f"gru.weight_ih_l{i}"] for i in range(1, layers)])
                            if layers > 1 else np.zeros((0, 3 * hidden, hidden), np.float32))
        self.ih_b = np.ascontiguousarray(np.stack([t[f"gru.bias_ih_l{i}"] for i in range(1, layers)])
                                         if layers > 1 else np.zeros((0, 3 * hidden), np.float32))
        self.hh = half_bits(np.stack([t[f"gru.weight_hh_l{i}"] for i in range(layers)]))
        self.hh_b = np.ascontiguousarray(np.stack([t[f"gru.bias_hh_l{i}"] for i in range(layers)]))
        self.head = half_bits(t["head.weight"])
        self.head_b = np.ascontiguousarray(t["head.bias"])
        self.layers, self.hidden = layers, hidden
        self.may_follow = grammar(tokenizer)
        self.workers = workers or usable_cores()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="midigen-sample") if self.workers > 1 else None

    def sample(self, prompt: list[int], settings: SamplingSettings, batch: int, random_seed: int,
               position: int = 0, control: np.ndarray | None = None) -> list[list[int]]:
        """``batch`` continuations of ``prompt`` (which must end in a token the grammar can follow).

        ``position`` is the prompt's length in grid steps, counted toward ``max_steps``; ``control`` the
        control vector read at every step (``midigen.controls``; None: nothing asked).
        """
        prompt_array = np.asarray(prompt, dtype=np.int64)
        table = self.input_table
        if control is not None and self.control_bias is not None:
            table = np.ascontiguousarray(table + self.control_bias @ np.asarray(control, dtype=np.float32))
        primed = cache_aligned_zeros((self.layers, 1, self.hidden))  # every row starts from the same state
        _prime(prompt_array, table, self.ih, self.ih_b, self.hh, self.hh_b, primed)
        u = uniforms(random_seed, batch, settings.max_tokens)
        out = np.zeros((batch, settings.max_tokens), dtype=np.int64)
        ranges = self.tokenizer.vocab.kind_ranges()
        top = chord_top(prompt, ranges)

        def run(rows: slice) -> np.ndarray:
            h = cache_aligned_zeros((self.layers, rows.stop - rows.start, self.hidden))
            h[...] = primed
            return _sample_loop(
                prompt_array[-1], table, self.ih, self.ih_b, self.hh, self.hh_b, self.head,
                self.head_b, h, self.may_follow, float(settings.temperature), float(settings.top_p),
                u[rows], ranges["PITCH"].start, ranges["PITCH"].stop, ranges["SHIFT"].start, ranges["SHIFT"].stop,
                ranges["VELOCITY"].start, ranges["VELOCITY"].stop, position, top,
                settings.max_notes, settings.max_steps, out[rows],
            )

        groups = [slice(rows[0], rows[-1] + 1) for rows in np.array_split(np.arange(batch), min(batch, self.workers))]
        lengths = np.concatenate(list(self._pool.map(run, groups)) if len(groups) > 1 else [run(groups[0])])
        return [out[b, : lengths[b]].tolist() for b in range(batch)]


class TorchSampler:
    """Sampler for CUDA (or any torch device): same rule as ``NumbaSampler``, one batch of
    device tensors, and a host sync only every ``sync_every`` steps to check for the end."""

    sync_every = 64

    def __init__(self, checkpoint: Checkpoint, tokenizer: Tokenizer, device: str):
        import torch

        from .model import MidiGRU

        self.torch = torch
        self.device = torch.device(device)
        self.model = MidiGRU(checkpoint.model_config)
        self.model.load_state_dict({k: torch.from_numpy(v) for k, v in sampling_tensors(checkpoint).items()})
        self.model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.may_follow = torch.from_numpy(grammar(tokenizer)).to(self.device)

    def sample(self, prompt: list[int], settings: SamplingSettings, batch: int, random_seed: int,
               position: int = 0, control: np.ndarray | None = None) -> list[list[int]]:
        torch = self.torch
        dev = self.device
        if control is not None:
            control = torch.from_numpy(np.asarray(control, dtype=np.float32)).to(dev).expand(batch, -1)
        ranges = self.tokenizer.vocab.kind_ranges()
        shift_values = torch.zeros(len(self.tokenizer.vocab), dtype=torch.long, device=dev)
        shift_values[ranges["SHIFT"].start : ranges["SHIFT"].stop] = torch.arange(1, len(ranges["SHIFT"]) + 1)
        is_pitch = torch.zeros(len(self.tokenizer.vocab), dtype=torch.bool, device=dev)
        is_pitch[ranges["PITCH"].start : ranges["PITCH"].stop] = True
        is_velocity = torch.zeros(len(self.tokenizer.vocab), dtype=torch.bool, device=dev)
        is_velocity[ranges["VELOCITY"].start : ranges["VELOCITY"].stop] = True
        u = torch.from_numpy(uniforms(random_seed, batch, settings.max_tokens)).to(dev)
        out = torch.zeros((batch, settings.max_tokens), dtype=torch.long, device=dev)
        lengths = torch.zeros(batch, dtype=torch.long, device=dev)
        notes = torch.zeros(batch, dtype=torch.long, device=dev)
        steps = torch.full((batch,), position, dtype=torch.long, device=dev)
        done = torch.zeros(batch, dtype=torch.bool, device=dev)
        top = torch.full((batch,), chord_top(prompt, ranges), dtype=torch.long, device=dev)
        vocab = torch.arange(len(self.tokenizer.vocab), device=dev)
        with torch.inference_mode():
            prefix = torch.tensor(prompt, device=dev).expand(batch, -1)
            state = self.model(prefix[:, :-1], None, control)[1] if len(prompt) > 1 else None
            token = prefix[:, -1].clone()
            for t in range(settings.max_tokens):
                logits, state = self.model(token[:, None], state, control)
                allowed = self.may_follow[token] & ~(is_pitch & (vocab <= top[:, None]))
                allowed &= ~(is_velocity & (top[:, None] >= ranges["PITCH"].stop - 1))
                choice = self._draw(logits[:, 0].double(), allowed, settings, u[:, t])
                top = torch.where(shift_values[choice] > 0, -1, torch.where(is_pitch[choice], choice, top))
                steps += shift_values[choice]
                done |= (steps >= settings.max_steps) & (notes > 0)
                record = ~done
                out[:, t] = torch.where(record, choice, out[:, t])
                lengths = torch.where(record, t + 1, lengths)
                token = torch.where(record, choice, token)
                notes += (is_pitch[choice] & record).long()
                done |= (notes >= settings.max_notes) & ~is_pitch[choice]
                if (t + 1) % self.sync_every == 0 and bool(done.all()):
                    break
        out, lengths = out.cpu(), lengths.cpu()
        return [out[b, : lengths[b]].tolist() for b in range(batch)]

    def _draw(self, logits, allowed, settings: SamplingSettings, u):
        torch = self.torch
        logits = logits.masked_fill(~allowed, -torch.inf)
        probs = torch.softmax(logits / settings.temperature, dim=-1)
        if settings.top_p < 1.0:
            ordered = probs.sort(dim=-1, descending=True).values
            kept = (ordered.cumsum(-1) - ordered) < settings.top_p
            threshold = ordered.masked_fill(~kept, torch.inf).min(dim=-1, keepdim=True).values
            probs = probs * (probs >= threshold)
        cdf = probs.cumsum(-1)
        choice = (cdf <= (u * cdf[:, -1])[:, None]).sum(-1)
        return choice.clamp_max(probs.shape[-1] - 1)

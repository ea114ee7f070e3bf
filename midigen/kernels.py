"""The numba-compiled sampling loop: GRU steps over float16 weights, the head, top-p and the draw.

Everything here runs without Python in the loop and without allocation per step: vectorized dot
products and gates, only the logits the grammar allows, and a top-p threshold found by bisection
over probabilities instead of sorting. ``NumbaSampler`` (``midigen.sample``) is its only caller;
``draw`` and ``top_p_threshold`` expose the drawing rule on one row.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

BISECTION_STEPS = 32

# Compiled once and cached on disk; no bounds checks, and division by zero gives inf instead of raising.
# Reassociation lets LLVM vectorize the sums and fuse multiply-adds; inf and NaN keep their meaning.
JIT = {"cache": True, "nogil": True, "boundscheck": False, "error_model": "numpy",
       "fastmath": {"reassoc", "contract", "nsz", "arcp"}}


class Weights(NamedTuple):
    """The GRU and head as the compiled loop reads them (one argument to it).

    ``input_table`` is the first layer's input projection of every token (embedding, weights and bias
    folded); matrices keep torch's (out features, in features) layout, stored as float16 bits
    (``half_bits``), so each output is a dot product over one row; ``ih`` holds layers 1 and up.
    """

    input_table: np.ndarray  # (vocab, 3 * hidden) float32
    ih: np.ndarray  # (layers - 1, 3 * hidden, hidden) uint16
    ih_b: np.ndarray  # (layers - 1, 3 * hidden) float32
    hh: np.ndarray  # (layers, 3 * hidden, hidden) uint16
    hh_b: np.ndarray  # (layers, 3 * hidden) float32
    head: np.ndarray  # (vocab, hidden) uint16
    head_b: np.ndarray  # (vocab,) float32

    @classmethod
    def of(cls, tensors: dict[str, np.ndarray], layers: int, hidden: int) -> Weights:
        """From a state dict of float32 arrays (``midigen.sample.sampling_tensors``)."""
        t = tensors
        upper = range(1, layers)
        return cls(
            input_table=np.ascontiguousarray(t["embedding.weight"] @ t["gru.weight_ih_l0"].T + t["gru.bias_ih_l0"]),
            ih=half_bits(np.stack([t[f"gru.weight_ih_l{i}"] for i in upper])
                         if layers > 1 else np.zeros((0, 3 * hidden, hidden), np.float32)),
            ih_b=np.ascontiguousarray(np.stack([t[f"gru.bias_ih_l{i}"] for i in upper])
                                      if layers > 1 else np.zeros((0, 3 * hidden), np.float32)),
            hh=half_bits(np.stack([t[f"gru.weight_hh_l{i}"] for i in range(layers)])),
            hh_b=np.ascontiguousarray(np.stack([t[f"gru.bias_hh_l{i}"] for i in range(layers)])),
            head=half_bits(t["head.weight"]),
            head_b=np.ascontiguousarray(t["head.bias"]),
        )


def half_bits(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` rounded to float16, as the uint16 bit patterns the compiled loop reads."""
    return np.ascontiguousarray(np.asarray(matrix, dtype=np.float32).astype(np.float16).view(np.uint16))


def cache_aligned_zeros(shape: tuple[int, ...]) -> np.ndarray:
    """float32 zeros starting on a 64-byte cache line. The GRU state is read in 32-byte vectors at every
    step: from NumPy's 16-byte alignment, half of them would straddle two lines (about 20% slower)."""
    size = math.prod(shape)
    buffer = np.zeros(size + 16, dtype=np.float32)
    start = (-buffer.ctypes.data % 64) // 4
    return buffer[start : start + size].reshape(shape)


def top_p_threshold(probs: np.ndarray, top_p: float) -> float:
    """Smallest probability kept by nucleus sampling (the bisection the samplers use)."""
    return _threshold(np.asarray(probs, dtype=np.float64), top_p)


def draw(logits: np.ndarray, allowed: np.ndarray, temperature: float, top_p: float, u: float) -> int:
    """One token from softmax(logits / T) over the ``allowed`` tokens and the nucleus (-1 if none is allowed)."""
    index = np.flatnonzero(allowed)
    values = np.asarray(logits, dtype=np.float64)[index]
    position = _pick(values, float(temperature), float(top_p), float(u), np.empty(len(index)))
    return int(index[position]) if position >= 0 else -1


# -- drawing -----------------------------------------------------------------------------------


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


# -- the GRU over float16 weights ------------------------------------------------------------------


@intrinsic
def _half(typingctx, bits):
    """The float32 value of IEEE half-precision ``bits`` (uint16): one F16C instruction per 8 values."""

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.uint16), codegen


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
def _step(tokens, weights, h, gi, gh):
    """Advance every layer's state ``h[layer]`` by one token per row."""
    for b in range(tokens.shape[0]):
        gi[b, :] = weights.input_table[tokens[b]]
    for layer in range(h.shape[0]):
        if layer > 0:
            _affine(weights.ih[layer - 1], weights.ih_b[layer - 1], h[layer - 1], gi)
        _affine(weights.hh[layer], weights.hh_b[layer], h[layer], gh)
        _gru_update(gi, gh, h[layer])


# -- the sampling loop -------------------------------------------------------------------------------


@njit(**JIT)
def feed(tokens, weights, h):
    """Feed ``tokens`` to every row of ``h``, one after the other."""
    gi = np.empty((h.shape[1], weights.hh.shape[1]), dtype=np.float32)
    gh = np.empty_like(gi)
    token = np.empty(h.shape[1], dtype=np.int64)
    for t in range(tokens.shape[0]):
        token[:] = tokens[t]
        _step(token, weights, h, gi, gh)


@njit(**JIT)
def top_states(tokens, weights, h):
    """The last layer's state (what the head reads) after each of ``tokens``, fed to the one row of ``h``."""
    gi = np.empty((1, weights.hh.shape[1]), dtype=np.float32)
    gh = np.empty_like(gi)
    token = np.empty(1, dtype=np.int64)
    out = np.empty((tokens.shape[0], h.shape[2]), dtype=np.float32)
    for t in range(tokens.shape[0]):
        token[0] = tokens[t]
        _step(token, weights, h, gi, gh)
        out[t] = h[h.shape[0] - 1, 0]
    return out


@njit(**JIT)
def sample_loop(weights, rules, limits, start, u, h, out, final):
    """Sample up to out.shape[1] tokens per row into ``out``; returns how many each row got, and leaves in
    ``final`` (shaped as ``h``) every row's state after the prompt and the tokens it got.

    ``weights``: a ``Weights``; ``rules``: a ``midigen.rules.Rules``; ``limits``: (temperature, top_p,
    max_notes, max_steps); ``start``: (the prompt's last token, its position in grid steps, its last
    chord top, 1 if ``h`` has been fed that last token already, else 0); ``u``: one uniform per row and
    token; ``h``: every layer's state of every row, fed the prompt (all of it, or all but its last token).
    Only the logits of tokens a row may draw are computed.
    """
    temperature, top_p, max_notes, max_steps = limits
    last, position, chord_top, fed = start
    pitch_lo, pitch_hi = rules.pitch_lo, rules.pitch_hi
    shift_lo, shift_hi = rules.shift_lo, rules.shift_hi
    velocity_lo, velocity_hi = rules.velocity_lo, rules.velocity_hi
    may_follow = rules.may_follow
    batch, vocab = h.shape[1], weights.head.shape[0]
    gi = np.empty((batch, weights.hh.shape[1]), dtype=np.float32)
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
    pending = np.zeros(batch, dtype=np.bool_)  # done, but its last token not yet fed: its state is the next step's
    top = np.full(batch, chord_top, dtype=np.int64)
    for t in range(out.shape[1]):
        if t > 0 or not fed:
            _step(token, weights, h, gi, gh)  # done rows go on stepping (their state is kept in ``final``)
        for b in range(batch):
            if done[b]:
                if pending[b]:
                    final[:, b] = h[:, b]
                    pending[b] = False
                continue
            n = 0
            for v in range(vocab):
                if (may_follow[token[b], v] and not pitch_lo <= v <= top[b]
                        and not (velocity_lo <= v < velocity_hi and top[b] >= pitch_hi - 1)):
                    index[n] = v
                    n += 1
            _affine1(weights.head, weights.head_b, h[h.shape[0] - 1], logits, b, index[:n])
            for j in range(n):
                values[j] = logits[b, j]
            choice = _pick(values[:n], temperature, top_p, u[b, t], probs)
            if choice < 0:
                done[b] = True
                final[:, b] = h[:, b]
                continue
            choice = index[choice]
            if shift_lo <= choice < shift_hi:
                top[b] = -1
                steps[b] += choice - shift_lo + 1
                if steps[b] >= max_steps and notes[b] > 0:
                    done[b] = True
                    final[:, b] = h[:, b]
                    continue
            token[b] = choice
            out[b, t] = choice
            lengths[b] = t + 1
            if pitch_lo <= choice < pitch_hi:
                notes[b] += 1
                top[b] = choice
            if notes[b] >= max_notes and not (pitch_lo <= choice < pitch_hi):
                done[b] = True
                pending[b] = True
        if done.all():
            break
    for b in range(batch):  # rows stopped by max_tokens have not been fed their last token either
        pending[b] |= not done[b]
    if pending.any():
        _step(token, weights, h, gi, gh)
        for b in range(batch):
            if pending[b]:
                final[:, b] = h[:, b]
    return lengths

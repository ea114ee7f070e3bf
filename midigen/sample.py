"""Sampling tokens from the GRU: temperature, top-p, grammar, stopping rules.

Two interchangeable samplers share one contract (``sample``):

* ``NumbaSampler`` runs the whole loop (GRU step, head, top-p, draw) in one
  compiled NumPy function on the CPU: no Python, no allocation, no sort per step.
* ``TorchSampler`` runs on CUDA (or any torch device): buffers are preallocated
  on the device and nothing is copied to the host until the loop ends.

Randomness comes from uniforms drawn up front with NumPy's PCG64 from the
random seed, so a seed gives the same tokens every time on the same machine.
Top-p keeps the most probable tokens whose mass reaches ``top_p``; its threshold
is found by bisection over probabilities instead of sorting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

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
    """Smallest probability kept by nucleus sampling (reference, NumPy)."""
    return _threshold(probs.astype(np.float64), top_p)


@njit(cache=True, fastmath=False)
def _threshold(probs, top_p):
    if top_p >= 1.0:
        return 0.0
    low, high = 0.0, probs.max()
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        mass = 0.0
        for p in probs:
            if p >= middle:
                mass += p
        if mass >= top_p:
            low = middle
        else:
            high = middle
    smallest = high
    for p in probs:
        if low <= p < smallest:
            smallest = p
    return smallest


@njit(cache=True, fastmath=False)
def _draw(logits, allowed, temperature, top_p, u, probs):
    """Index drawn from softmax(logits / T) restricted to ``allowed`` and the nucleus."""
    best = -np.inf
    for i in range(logits.shape[0]):
        if allowed[i] and logits[i] > best:
            best = logits[i]
    total = 0.0
    for i in range(logits.shape[0]):
        probs[i] = math.exp((logits[i] - best) / temperature) if allowed[i] else 0.0
        total += probs[i]
    if total == 0.0:
        return -1
    for i in range(logits.shape[0]):
        probs[i] /= total
    threshold = _threshold(probs, top_p)
    kept = 0.0
    for i in range(probs.shape[0]):
        if probs[i] >= threshold:
            kept += probs[i]
    target = u * kept
    last = -1
    cumulative = 0.0
    for i in range(probs.shape[0]):
        if probs[i] >= threshold and probs[i] > 0.0:
            cumulative += probs[i]
            last = i
            if cumulative > target:
                return i
    return last


def draw(logits: np.ndarray, allowed: np.ndarray, temperature: float, top_p: float, u: float) -> int:
    """One token from ``logits`` (the pure sampling rule, shared by both samplers' tests)."""
    probs = np.empty(logits.shape[0], dtype=np.float64)
    return int(_draw(logits.astype(np.float64), allowed, float(temperature), float(top_p), float(u), probs))


@njit(cache=True, fastmath=True)
def _affine(weight_t, bias, x, out):
    """out[b] = x[b] @ weight_t + bias, reading each weight row once for the whole batch."""
    for b in range(x.shape[0]):
        out[b, :] = bias
    for k in range(weight_t.shape[0]):
        row = weight_t[k]
        for b in range(x.shape[0]):
            xb = x[b, k]
            ob = out[b]
            for i in range(row.shape[0]):
                ob[i] += row[i] * xb


@njit(cache=True, fastmath=True)
def _gru_update(gi, gh, h):
    """PyTorch's GRU cell update from input and hidden projections (r, z, n order)."""
    size = h.shape[1]
    for b in range(h.shape[0]):
        for j in range(size):
            r = 1.0 / (1.0 + math.exp(-(gi[b, j] + gh[b, j])))
            z = 1.0 / (1.0 + math.exp(-(gi[b, size + j] + gh[b, size + j])))
            n = math.tanh(gi[b, 2 * size + j] + r * gh[b, 2 * size + j])
            h[b, j] = n + z * (h[b, j] - n)


@njit(cache=True, fastmath=True)
def _step(tokens, input_table, ih_t, ih_b, hh_t, hh_b, h, gi, gh):
    """Advance every layer's state ``h[layer]`` by one token per row."""
    for b in range(tokens.shape[0]):
        gi[b, :] = input_table[tokens[b]]
    for layer in range(h.shape[0]):
        if layer > 0:
            _affine(ih_t[layer - 1], ih_b[layer - 1], h[layer - 1], gi)
        _affine(hh_t[layer], hh_b[layer], h[layer], gh)
        _gru_update(gi, gh, h[layer])


@njit(cache=True, nogil=True)
def _prime(prompt, input_table, ih_t, ih_b, hh_t, hh_b, h):
    """Feed all prompt tokens but the last (its step happens in the sampling loop)."""
    gi = np.empty((h.shape[1], hh_t.shape[2]), dtype=np.float32)
    gh = np.empty_like(gi)
    token = np.empty(h.shape[1], dtype=np.int64)
    for t in range(prompt.shape[0] - 1):
        token[:] = prompt[t]
        _step(token, input_table, ih_t, ih_b, hh_t, hh_b, h, gi, gh)


@njit(cache=True, nogil=True)
def _sample_loop(
    last, input_table, ih_t, ih_b, hh_t, hh_b, head_t, head_b, h, may_follow, temperature, top_p, u,
    pitch_lo, pitch_hi, shift_lo, shift_hi, position, chord_top, max_notes, max_steps, out,
):
    """Sample up to out.shape[1] tokens per row; returns how many each row got.

    Chords are written from low to high: after PITCH p, lower or equal pitches are
    not allowed until the next SHIFT (``chord_top`` is the prompt's last chord top).
    """
    batch = h.shape[1]
    gi = np.empty((batch, hh_t.shape[2]), dtype=np.float32)
    gh = np.empty_like(gi)
    logits = np.empty((batch, head_t.shape[1]), dtype=np.float32)
    row_logits = np.empty(head_t.shape[1], dtype=np.float64)
    probs = np.empty(head_t.shape[1], dtype=np.float64)
    token = np.full(batch, last, dtype=np.int64)
    notes = np.zeros(batch, dtype=np.int64)
    steps = np.full(batch, position, dtype=np.int64)
    lengths = np.zeros(batch, dtype=np.int64)
    done = np.zeros(batch, dtype=np.bool_)
    top = np.full(batch, chord_top, dtype=np.int64)
    allowed = np.empty(may_follow.shape[1], dtype=np.bool_)
    for t in range(out.shape[1]):
        _step(token, input_table, ih_t, ih_b, hh_t, hh_b, h, gi, gh)
        _affine(head_t, head_b, h[h.shape[0] - 1], logits)
        for b in range(batch):
            if done[b]:
                continue
            row_logits[:] = logits[b]
            allowed[:] = may_follow[token[b]]
            allowed[pitch_lo : max(top[b] + 1, pitch_lo)] = False
            choice = _draw(row_logits, allowed, temperature, top_p, u[b, t], probs)
            if choice < 0:
                done[b] = True
                continue
            if shift_lo <= choice < shift_hi:
                top[b] = -1
                steps[b] += choice - shift_lo + 1
                if steps[b] >= max_steps:
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


class NumbaSampler:
    """CPU sampler: the checkpoint's weights rearranged for the compiled loop."""

    def __init__(self, checkpoint: Checkpoint, tokenizer: Tokenizer):
        t = {k: np.asarray(v, dtype=np.float32) for k, v in checkpoint.tensors.items()}
        layers = checkpoint.model_config.num_layers
        hidden = checkpoint.model_config.hidden_size
        self.tokenizer = tokenizer
        self.input_table = np.ascontiguousarray(t["embedding.weight"] @ t["gru.weight_ih_l0"].T + t["gru.bias_ih_l0"])
        self.ih_t = np.ascontiguousarray(
            np.stack([t[f"gru.weight_ih_l{i}"].T for i in range(1, layers)])
            if layers > 1 else np.zeros((0, hidden, 3 * hidden), np.float32))
        self.ih_b = np.ascontiguousarray(
            np.stack([t[f"gru.bias_ih_l{i}"] for i in range(1, layers)])
            if layers > 1 else np.zeros((0, 3 * hidden), np.float32))
        self.hh_t = np.ascontiguousarray(np.stack([t[f"gru.weight_hh_l{i}"].T for i in range(layers)]))
        self.hh_b = np.ascontiguousarray(np.stack([t[f"gru.bias_hh_l{i}"] for i in range(layers)]))
        self.head_t = np.ascontiguousarray(t["head.weight"].T)
        self.head_b = np.ascontiguousarray(t["head.bias"])
        self.layers, self.hidden = layers, hidden
        self.may_follow = grammar(tokenizer)

    def sample(self, prompt: list[int], settings: SamplingSettings, batch: int, random_seed: int,
               position: int = 0) -> list[list[int]]:
        """``batch`` continuations of ``prompt`` (which must end in a token the grammar can follow).

        ``position`` is the prompt's length in grid steps, counted toward ``max_steps``.
        """
        h = np.zeros((self.layers, batch, self.hidden), dtype=np.float32)
        prompt_array = np.asarray(prompt, dtype=np.int64)
        _prime(prompt_array, self.input_table, self.ih_t, self.ih_b, self.hh_t, self.hh_b, h)
        out = np.zeros((batch, settings.max_tokens), dtype=np.int64)
        ranges = self.tokenizer.vocab.kind_ranges()
        lengths = _sample_loop(
            prompt_array[-1], self.input_table, self.ih_t, self.ih_b, self.hh_t, self.hh_b, self.head_t,
            self.head_b, h, self.may_follow, float(settings.temperature), float(settings.top_p),
            uniforms(random_seed, batch, settings.max_tokens), ranges["PITCH"].start, ranges["PITCH"].stop,
            ranges["SHIFT"].start, ranges["SHIFT"].stop, position, chord_top(prompt, ranges),
            settings.max_notes, settings.max_steps, out,
        )
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
        self.model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in checkpoint.tensors.items()})
        self.model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.may_follow = torch.from_numpy(grammar(tokenizer)).to(self.device)

    def sample(self, prompt: list[int], settings: SamplingSettings, batch: int, random_seed: int,
               position: int = 0) -> list[list[int]]:
        torch = self.torch
        dev = self.device
        ranges = self.tokenizer.vocab.kind_ranges()
        shift_values = torch.zeros(len(self.tokenizer.vocab), dtype=torch.long, device=dev)
        shift_values[ranges["SHIFT"].start : ranges["SHIFT"].stop] = torch.arange(1, len(ranges["SHIFT"]) + 1)
        is_pitch = torch.zeros(len(self.tokenizer.vocab), dtype=torch.bool, device=dev)
        is_pitch[ranges["PITCH"].start : ranges["PITCH"].stop] = True
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
            state = self.model(prefix[:, :-1])[1] if len(prompt) > 1 else None
            token = prefix[:, -1].clone()
            for t in range(settings.max_tokens):
                logits, state = self.model(token[:, None], state)
                allowed = self.may_follow[token] & ~(is_pitch & (vocab <= top[:, None]))
                choice = self._draw(logits[:, 0].double(), allowed, settings, u[:, t])
                top = torch.where(shift_values[choice] > 0, -1, torch.where(is_pitch[choice], choice, top))
                steps += shift_values[choice]
                done |= steps >= settings.max_steps
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

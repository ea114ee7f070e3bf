"""Sampling tokens from the GRU: two interchangeable samplers with one contract (``Sampler.sample``).

* ``NumbaSampler`` runs the whole loop (GRU step, head, top-p, draw) in one compiled function on
  the CPU (``midigen.kernels``), with variations spread over the cores.
* ``TorchSampler`` runs on CUDA (or any torch device): buffers are preallocated on the device and
  nothing is copied to the host until the loop ends.

Both obey the same rules (``midigen.rules``: grammar, chord order, stopping), read the weight
matrices rounded to float16 (``sampling_tensors``), so they sample the same model, and draw with
the same uniforms, taken up front from NumPy's PCG64 seeded by the random seed: a seed gives the
same tokens every time on the same machine. Top-p keeps the most probable tokens whose mass
reaches ``top_p``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from .checkpoint import Checkpoint
from .device import usable_cores
from .kernels import Weights, cache_aligned_zeros, prime, sample_loop
from .rules import Rules, SamplingSettings, chord_top
from .tokenizer import Tokenizer

ROUNDED = ("gru.weight_", "head.weight")  # the tensors read at every step


def sampling_tensors(checkpoint: Checkpoint) -> dict[str, np.ndarray]:
    """The checkpoint's tensors as both samplers use them: float32, with the weight matrices of the GRU
    and the head rounded to float16 values. Reading half the bytes per step is what makes the CPU loop
    fast; on the shipped model it changes the validation NLL by 5e-6 nats per token."""
    return {name: np.asarray(value, dtype=np.float32).astype(np.float16).astype(np.float32)
            if name.startswith(ROUNDED) else np.asarray(value, dtype=np.float32)
            for name, value in checkpoint.tensors.items()}


def uniforms(random_seed: int, batch: int, length: int) -> np.ndarray:
    """The uniform draws of a whole run, one row per variation."""
    return np.random.Generator(np.random.PCG64(random_seed)).random((batch, length))


class Sampler(ABC):
    """What both samplers share: the rules, the uniforms and the shape of the answer."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.rules = Rules.of(tokenizer)

    def sample(self, prompt: list[int], settings: SamplingSettings, batch: int, random_seed: int,
               position: int = 0, control: np.ndarray | None = None) -> list[list[int]]:
        """``batch`` continuations of ``prompt`` (which must end in a token the grammar can follow).

        ``position`` is the prompt's length in grid steps, counted toward ``max_steps``; ``control`` the
        control vector read at every step (``midigen.controls``; None: nothing asked).
        """
        u = uniforms(random_seed, batch, settings.max_tokens)
        start = (int(prompt[-1]), int(position), chord_top(prompt, self.tokenizer.vocab.kind_ranges()))
        out, lengths = self._run(prompt, settings, u, start, control)
        return [out[b, : lengths[b]].tolist() for b in range(batch)]

    @abstractmethod
    def _run(self, prompt: list[int], settings: SamplingSettings, u: np.ndarray, start: tuple[int, int, int],
             control: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, lengths): one row of ``settings.max_tokens`` tokens per row of ``u``, and how many of
        them each row keeps. ``start`` is (the prompt's last token, its position, its last chord top)."""


class NumbaSampler(Sampler):
    """CPU sampler: the weights rearranged for the compiled loop, matrices in float16.

    Variations are independent rows: a batch is split across up to ``workers`` threads (the loop
    releases the GIL), so 4 variations on 2 cores cost about what 2 cost on one.
    """

    def __init__(self, checkpoint: Checkpoint, tokenizer: Tokenizer, workers: int | None = None):
        super().__init__(tokenizer)
        self.layers = checkpoint.model_config.num_layers
        self.hidden = checkpoint.model_config.hidden_size
        tensors = sampling_tensors(checkpoint)
        self.weights = Weights.of(tensors, self.layers, self.hidden)
        # controls enter as a constant input bias: W_ih (E[token] + P c) + b_ih = table[token] + W_ih P c
        self.control_bias = (tensors["gru.weight_ih_l0"] @ tensors["control.weight"]
                             if "control.weight" in tensors else None)
        self.workers = workers or usable_cores()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="midigen-sample") if self.workers > 1 else None

    def _run(self, prompt, settings, u, start, control):
        batch = u.shape[0]
        weights = self.weights
        if control is not None and self.control_bias is not None:
            table = weights.input_table + self.control_bias @ np.asarray(control, dtype=np.float32)
            weights = weights._replace(input_table=np.ascontiguousarray(table))
        primed = cache_aligned_zeros((self.layers, 1, self.hidden))  # every row starts from the same state
        prime(np.asarray(prompt, dtype=np.int64), weights, primed)
        out = np.zeros((batch, settings.max_tokens), dtype=np.int64)
        limits = (float(settings.temperature), float(settings.top_p), settings.max_notes, settings.max_steps)

        def run(rows: slice) -> np.ndarray:
            h = cache_aligned_zeros((self.layers, rows.stop - rows.start, self.hidden))
            h[...] = primed
            return sample_loop(weights, self.rules, limits, start, u[rows], h, out[rows])

        groups = [slice(rows[0], rows[-1] + 1) for rows in np.array_split(np.arange(batch), min(batch, self.workers))]
        lengths = np.concatenate(list(self._pool.map(run, groups)) if len(groups) > 1 else [run(groups[0])])
        return out, lengths


class TorchSampler(Sampler):
    """Sampler for CUDA (or any torch device): same rules as ``NumbaSampler``, one batch of
    device tensors, and a host sync only every ``sync_every`` steps to check for the end."""

    sync_every = 64

    def __init__(self, checkpoint: Checkpoint, tokenizer: Tokenizer, device: str):
        import torch

        from .model import MidiGRU

        super().__init__(tokenizer)
        self.torch = torch
        self.device = torch.device(device)
        self.model = MidiGRU.from_checkpoint(replace(checkpoint, tensors=sampling_tensors(checkpoint))).to(self.device)
        self.may_follow = torch.from_numpy(self.rules.may_follow).to(self.device)

    def _run(self, prompt, settings, u, start, control):
        torch, dev, rules = self.torch, self.device, self.rules
        batch, size = u.shape[0], len(self.tokenizer.vocab)
        if control is not None:
            control = torch.from_numpy(np.asarray(control, dtype=np.float32)).to(dev).expand(batch, -1)
        _, position, top = start
        shift_values = torch.zeros(size, dtype=torch.long, device=dev)
        shift_values[rules.shift_lo : rules.shift_hi] = torch.arange(1, rules.shift_hi - rules.shift_lo + 1)
        is_pitch = torch.zeros(size, dtype=torch.bool, device=dev)
        is_pitch[rules.pitch_lo : rules.pitch_hi] = True
        is_velocity = torch.zeros(size, dtype=torch.bool, device=dev)
        is_velocity[rules.velocity_lo : rules.velocity_hi] = True
        u = torch.from_numpy(u).to(dev)
        out = torch.zeros((batch, settings.max_tokens), dtype=torch.long, device=dev)
        lengths = torch.zeros(batch, dtype=torch.long, device=dev)
        notes = torch.zeros(batch, dtype=torch.long, device=dev)
        steps = torch.full((batch,), position, dtype=torch.long, device=dev)
        done = torch.zeros(batch, dtype=torch.bool, device=dev)
        top = torch.full((batch,), top, dtype=torch.long, device=dev)
        vocab = torch.arange(size, device=dev)
        with torch.inference_mode():
            prefix = torch.tensor(prompt, device=dev).expand(batch, -1)
            state = self.model(prefix[:, :-1], None, control)[1] if len(prompt) > 1 else None
            token = prefix[:, -1].clone()
            for t in range(settings.max_tokens):
                logits, state = self.model(token[:, None], state, control)
                allowed = self.may_follow[token] & ~(is_pitch & (vocab <= top[:, None]))
                allowed &= ~(is_velocity & (top[:, None] >= rules.pitch_hi - 1))
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
        return out.cpu().numpy(), lengths.cpu().numpy()

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

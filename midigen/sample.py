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

import copy
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from .checkpoint import Checkpoint
from .device import usable_cores
from .kernels import Weights, cache_aligned_zeros, feed, sample_loop
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

    def __init__(self, tokenizer: Tokenizer, layers: int, hidden: int):
        self.tokenizer = tokenizer
        self.rules = Rules.of(tokenizer)
        self.layers = layers
        self.hidden = hidden

    def sample(self, prompt: list[int], settings: SamplingSettings, batch: int, random_seed: int,
               position: int = 0, control: np.ndarray | None = None, bias: np.ndarray | None = None,
               state: np.ndarray | None = None) -> list[list[int]]:
        """``batch`` continuations of ``prompt`` (which must end in a token the grammar can follow).

        ``position`` is the prompt's length in grid steps, counted toward ``max_steps``; ``control`` the
        control vector read at every step (``midigen.controls``; None: nothing asked); ``bias`` one value
        per token added to the logits before temperature and top-p (None: none); ``state`` the GRU state
        (layers, hidden) after the whole prompt, as ``sample_states`` or ``advance`` give it: the prompt
        is then not fed again, only read for its last token and its last chord (None: fed from zero).
        """
        return self.sample_states(prompt, settings, batch, random_seed, position, control, bias, state)[0]

    def sample_states(self, prompt: list[int], settings: SamplingSettings, batch: int, random_seed: int,
                      position: int = 0, control: np.ndarray | None = None, bias: np.ndarray | None = None,
                      state: np.ndarray | None = None) -> tuple[list[list[int]], np.ndarray]:
        """``sample``'s rows, and states: float32 (batch, layers, hidden), the GRU state of each row after
        the prompt and all of that row's tokens, to go on from with ``state=`` (after ``advance`` for any
        tokens added in between)."""
        size = len(self.tokenizer.vocab)
        if bias is not None:
            bias = np.asarray(bias, dtype=np.float32)
            if bias.shape != (size,):
                raise ValueError(f"bias must hold one value per token ({size}), not shape {bias.shape}")
        state = self._checked(state)
        u = uniforms(random_seed, batch, settings.max_tokens)
        start = (int(prompt[-1]), int(position), chord_top(prompt, self.tokenizer.vocab.kind_ranges()))
        out, lengths, states = self._run(prompt, settings, u, start, control, bias, state)
        return [out[b, : lengths[b]].tolist() for b in range(batch)], states

    def below(self, highest: int) -> Sampler:
        """This sampler (sharing its weights) with PITCH token ``highest`` read as the highest pitch by the chord rules:
        no VELOCITY is drawn in a chord that has reached it, which would have to go on with a pitch above it. For a
        writer that forbids the pitches above it with a bias (``phrases.range_bias``)."""
        other = copy.copy(self)
        other.rules = self.rules._replace(pitch_hi=min(highest + 1, self.rules.pitch_hi))
        return other

    def advance(self, state: np.ndarray | None, tokens: list[int], control: np.ndarray | None = None) -> np.ndarray:
        """The state (layers, hidden) after feeding ``tokens`` to a GRU in ``state`` (None: the zero state) reading
        ``control``: for tokens added between two ``sample_states`` calls that were not sampled."""
        return self._advance(self._checked(state), [int(t) for t in tokens], control)

    def _checked(self, state: np.ndarray | None) -> np.ndarray | None:
        if state is None:
            return None
        state = np.asarray(state, dtype=np.float32)
        if state.shape != (self.layers, self.hidden):
            raise ValueError(f"state must have shape (layers, hidden) {(self.layers, self.hidden)}, not {state.shape}")
        return state

    @abstractmethod
    def _run(self, prompt: list[int], settings: SamplingSettings, u: np.ndarray, start: tuple[int, int, int],
             control: np.ndarray | None, bias: np.ndarray | None,
             state: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tokens, lengths, states): one row of ``settings.max_tokens`` tokens per row of ``u``, how many of
        them each row keeps, and each row's state after them (batch, layers, hidden). ``start`` is (the
        prompt's last token, its position, its last chord top); ``state``, if given, the state after the prompt."""

    @abstractmethod
    def _advance(self, state: np.ndarray | None, tokens: list[int], control: np.ndarray | None) -> np.ndarray:
        """``advance`` once its arguments are checked."""


class NumbaSampler(Sampler):
    """CPU sampler: the weights rearranged for the compiled loop, matrices in float16.

    Variations are independent rows: a batch is split across up to ``workers`` threads (the loop
    releases the GIL), so 4 variations on 2 cores cost about what 2 cost on one.
    """

    def __init__(self, checkpoint: Checkpoint, tokenizer: Tokenizer, workers: int | None = None):
        super().__init__(tokenizer, checkpoint.model_config.num_layers, checkpoint.model_config.hidden_size)
        tensors = sampling_tensors(checkpoint)
        self.weights = Weights.of(tensors, self.layers, self.hidden)
        # controls enter as a constant input bias: W_ih (E[token] + P c) + b_ih = table[token] + W_ih P c
        self.control_bias = (tensors["gru.weight_ih_l0"] @ tensors["control.weight"]
                             if "control.weight" in tensors else None)
        self.workers = workers or usable_cores()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="midigen-sample") if self.workers > 1 else None

    def _weights(self, control: np.ndarray | None, bias: np.ndarray | None = None) -> Weights:
        """The weights with ``control`` folded into the input table and ``bias`` into the head's bias."""
        weights = self.weights
        if control is not None and self.control_bias is not None:
            table = weights.input_table + self.control_bias @ np.asarray(control, dtype=np.float32)
            weights = weights._replace(input_table=np.ascontiguousarray(table))
        if bias is not None:
            weights = weights._replace(head_b=np.ascontiguousarray(weights.head_b + bias))
        return weights

    def _fed(self, weights: Weights, state: np.ndarray | None, tokens: list[int]) -> np.ndarray:
        """One row's state (layers, 1, hidden) after ``tokens`` from ``state`` (None: zeros)."""
        h = cache_aligned_zeros((self.layers, 1, self.hidden))
        if state is not None:
            h[:, 0] = state
        feed(np.asarray(tokens, dtype=np.int64), weights, h)
        return h

    def _advance(self, state, tokens, control):
        return self._fed(self._weights(control), state, tokens)[:, 0].copy()

    def _run(self, prompt, settings, u, start, control, bias, state):
        batch = u.shape[0]
        weights = self._weights(control, bias)
        # every row starts from the same state: after the prompt (given), or after all of it but its last token
        primed = self._fed(weights, state, [] if state is not None else prompt[:-1])
        start = (*start, int(state is not None))
        out = np.zeros((batch, settings.max_tokens), dtype=np.int64)
        final = np.zeros((self.layers, batch, self.hidden), dtype=np.float32)
        limits = (float(settings.temperature), float(settings.top_p), settings.max_notes, settings.max_steps)

        def run(rows: slice) -> np.ndarray:
            h = cache_aligned_zeros((self.layers, rows.stop - rows.start, self.hidden))
            h[...] = primed
            group = np.empty_like(h)
            lengths = sample_loop(weights, self.rules, limits, start, u[rows], h, out[rows], group)
            final[:, rows] = group
            return lengths

        groups = [slice(rows[0], rows[-1] + 1) for rows in np.array_split(np.arange(batch), min(batch, self.workers))]
        lengths = np.concatenate(list(self._pool.map(run, groups)) if len(groups) > 1 else [run(groups[0])])
        return out, lengths, np.ascontiguousarray(final.transpose(1, 0, 2))


class TorchSampler(Sampler):
    """Sampler for CUDA (or any torch device): same rules as ``NumbaSampler``, one batch of
    device tensors, and a host sync only every ``sync_every`` steps to check for the end."""

    sync_every = 64

    def __init__(self, checkpoint: Checkpoint, tokenizer: Tokenizer, device: str):
        import torch

        from .model import MidiGRU

        super().__init__(tokenizer, checkpoint.model_config.num_layers, checkpoint.model_config.hidden_size)
        self.torch = torch
        self.device = torch.device(device)
        self.model = MidiGRU.from_checkpoint(replace(checkpoint, tensors=sampling_tensors(checkpoint))).to(self.device)
        self.may_follow = torch.from_numpy(self.rules.may_follow).to(self.device)

    def _advance(self, state, tokens, control):
        torch = self.torch
        if not tokens:
            return np.zeros((self.layers, self.hidden), np.float32) if state is None else state.copy()
        if control is not None:
            control = torch.from_numpy(np.asarray(control, dtype=np.float32)).to(self.device)[None]
        if state is not None:
            state = torch.from_numpy(state).to(self.device)[:, None].contiguous()
        with torch.inference_mode():
            state = self.model(torch.tensor([tokens], device=self.device), state, control)[1]
        return state[:, 0].cpu().numpy()

    def _run(self, prompt, settings, u, start, control, bias, state):
        torch, dev, rules = self.torch, self.device, self.rules
        batch, size = u.shape[0], len(self.tokenizer.vocab)
        if control is not None:
            control = torch.from_numpy(np.asarray(control, dtype=np.float32)).to(dev).expand(batch, -1)
        if bias is not None:
            bias = torch.from_numpy(bias).to(dev)
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
        record = torch.ones(batch, dtype=torch.bool, device=dev)
        top = torch.full((batch,), top, dtype=torch.long, device=dev)
        vocab = torch.arange(size, device=dev)
        with torch.inference_mode():
            prefix = torch.tensor(prompt, device=dev).expand(batch, -1)
            token = prefix[:, -1].clone()
            given = state is not None
            if given:  # the state after the whole prompt: the first draw reads it as it is
                state = torch.from_numpy(state).to(dev)[:, None].expand(-1, batch, -1).contiguous()
                logits = self.model.head(state[-1])
            else:
                state = self.model(prefix[:, :-1], None, control)[1] if len(prompt) > 1 else None
            final = torch.zeros((self.layers, batch, self.hidden), device=dev)
            for t in range(settings.max_tokens):
                if t > 0 or not given:
                    logits, state = self.model(token[:, None], state, control)
                    logits = logits[:, 0]
                final = torch.where(record[None, :, None], state, final)  # rows fed all they kept: the last step's
                if bias is not None:
                    logits = logits + bias
                allowed = self.may_follow[token] & ~(is_pitch & (vocab <= top[:, None]))
                allowed &= ~(is_velocity & (top[:, None] >= rules.pitch_hi - 1))
                choice = self._draw(logits.double(), allowed, settings, u[:, t])
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
            state = self.model(token[:, None], state, control)[1]  # rows that kept a token at the last step
            final = torch.where(record[None, :, None], state, final)
        return out.cpu().numpy(), lengths.cpu().numpy(), final.permute(1, 0, 2).cpu().numpy()

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

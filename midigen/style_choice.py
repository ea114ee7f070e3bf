"""Which style writes a request: every style's model, loaded on first use, and Auto's choice for a seed.

Auto picks the style whose model finds the seed likeliest: the lowest negative log-likelihood per token of
the seed's last ``SCORED_NOTES`` notes (controls unknown, as no style's controls are known yet). From
scratch Auto is ``styles.DEFAULT``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import styles
from .generate import Generated, GenerationRequest, Generator, shift_to_zero
from .kernels import Weights, cache_aligned_zeros, top_states
from .sample import sampling_tensors
from .settings import UserError
from .splice import Seed
from .tokenizer import Score

SCORED_NOTES = 120  # the seed's last notes that Auto weighs: enough to tell the styles apart, ~10 ms a model
PICKS_KEPT = 256  # Auto's latest picks, by seed: the same seed again (more takes, Regenerate) is not scored again


class StyleBook:
    """The styles' generators on one device, each loaded when first asked for (thread-safe).

    ``weights`` maps a style's name to its checkpoint (default: ``Style.weights``); styles whose weights are
    missing are not offered.
    """

    def __init__(self, device: str = "cpu", weights: dict[str, str | Path] | None = None,
                 cpu_book: StyleBook | None = None):
        given = weights or {}
        self.device = device
        paths = {s.name: Path(given.get(s.name, s.weights)) for s in styles.STYLES}
        self.weights = {name: path for name, path in paths.items()
                        if path.with_suffix(".json").exists() or name == styles.DEFAULT.name}
        self._cpu_book = cpu_book  # a book on another device shares its loaded weights
        self._generators: dict[str, Generator] = {}
        self._scorers: dict[str, SeedScorer] = {}
        self._picks: OrderedDict[bytes, str] = OrderedDict()  # by ``tail_key``, oldest first
        self._lock = threading.Lock()

    @classmethod
    def single(cls, generator: Generator) -> StyleBook:
        """A book of one style: ``generator``'s, already loaded."""
        book = cls(generator.device)
        book.weights = {generator.style.name: Path()}  # never read: it is loaded
        book._generators[generator.style.name] = generator
        return book

    @property
    def names(self) -> list[str]:
        return list(self.weights)

    def generator(self, name: str) -> Generator:
        """The generator of style ``name``, loaded now if it is not yet."""
        if name not in self.weights:
            raise UserError(f"The {name} style is not installed on this server: choose {', '.join(self.weights)}.")
        with self._lock:
            if name not in self._generators:
                if self._cpu_book is not None:
                    self._generators[name] = self._cpu_book.generator(name).on(self.device)
                else:
                    self._generators[name] = Generator(self.weights[name], self.device, styles.style(name))
            return self._generators[name]

    def on(self, device: str) -> StyleBook:
        """A book sampling on ``device`` with the weights this one loads."""
        return StyleBook(device, dict(self.weights), cpu_book=self)

    @property
    def default(self) -> str:
        """The style from scratch: ``styles.DEFAULT`` where it is in the book."""
        return styles.DEFAULT.name if styles.DEFAULT.name in self.weights else self.names[0]

    @property
    def tokenizer(self):
        return self.generator(self.default).tokenizer

    def load_all(self) -> None:
        """Load every style (for a server that would rather pay at start than at a user's first request)."""
        for name in self.names:
            self.generator(name)

    def pick(self, seed_score: Score) -> str:
        """The style whose model finds ``seed_score`` likeliest; ``styles.DEFAULT`` for an empty seed."""
        if not seed_score.notes or len(self.names) == 1:
            return self.default
        key = tail_key(seed_score)
        with self._lock:
            if key in self._picks:
                self._picks.move_to_end(key)
                return self._picks[key]
        chosen = min(self.names, key=lambda name: self.seed_nll(name, seed_score))
        with self._lock:
            self._picks[key] = chosen
            while len(self._picks) > PICKS_KEPT:
                self._picks.popitem(last=False)
        return chosen

    def seed_nll(self, name: str, seed_score: Score) -> float:
        """Negative log-likelihood per token of the last ``SCORED_NOTES`` notes of ``seed_score`` under style
        ``name``."""
        generator = self.generator(name)
        with self._lock:
            if name not in self._scorers:
                self._scorers[name] = SeedScorer(generator.checkpoint)
        tail = shift_to_zero(Score(seed_score.notes[-SCORED_NOTES:], seed_score.bpm))
        return self._scorers[name].nll(np.asarray(generator.tokenizer.score_to_tokens(tail, add_eos=False)))

    def choose(self, request: GenerationRequest, seed: Seed | None = None) -> Generator:
        """The generator that writes ``request``: the style it names, or Auto's choice for ``seed``."""
        if request.style != styles.AUTO:
            return self.generator(request.style)
        if seed is None:
            return self.generator(self.default)
        return self.generator(self.pick(self.tokenizer.midi_to_score(seed.primed)))

    def generate(self, request: GenerationRequest, seed: Seed | None = None) -> list[Generated]:
        """``Generator.generate`` in the style ``choose`` gives; each piece names its style."""
        generator = self.choose(request, seed)
        return generator.generate(replace(request, style=generator.style.name), seed)


def tail_key(seed_score: Score) -> bytes:
    """A digest of the notes Auto weighs in ``seed_score`` (its last ``SCORED_NOTES``) and its tempo."""
    notes = np.array([(n.pitch, n.start, n.duration, n.velocity) for n in seed_score.notes[-SCORED_NOTES:]],
                     dtype=np.int64)
    return hashlib.blake2b(notes.tobytes() + np.float64(seed_score.bpm).tobytes(), digest_size=16).digest()


class SeedScorer:
    """One model's logits after each token of a seed (controls unknown), by the compiled CPU loop's own step
    (``kernels.top_states``), whatever device the book samples on: torch stays out of the app."""

    def __init__(self, checkpoint):
        config = checkpoint.model_config
        tensors = sampling_tensors(checkpoint)
        self.shape = (config.num_layers, 1, config.hidden_size)
        self.weights = Weights.of(tensors, config.num_layers, config.hidden_size)
        self.head, self.head_bias = np.ascontiguousarray(tensors["head.weight"].T), tensors["head.bias"]

    def nll(self, tokens: np.ndarray) -> float:
        """Negative log-likelihood per token of ``tokens`` after their first."""
        states = top_states(np.asarray(tokens[:-1], dtype=np.int64), self.weights, cache_aligned_zeros(self.shape))
        logits = states @ self.head + self.head_bias
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-log_probs[np.arange(len(tokens) - 1), tokens[1:]].mean())

"""The GRU language model over midigen tokens, optionally conditioned on a control vector."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .checkpoint import Checkpoint, ModelConfig


class MidiGRU(nn.Module):
    """Embedding (+ projected controls) -> multi-layer GRU -> linear head giving next-token logits.

    With ``control_size`` > 0 a linear projection of the control vector (``midigen.controls``) is added
    to every token embedding, so the whole piece is written knowing its key, register, density and
    loudness. A missing control is the zero vector: nothing asked.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size)
        self.control = (nn.Linear(config.control_size, config.embedding_size, bias=False)
                        if config.control_size else None)
        self.gru = nn.GRU(
            config.embedding_size,
            config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> MidiGRU:
        """The network ``checkpoint`` describes, with its weights, in evaluation mode (no dropout)."""
        model = cls(checkpoint.model_config)
        model.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in checkpoint.tensors.items()})
        return model.eval()

    def forward(self, tokens: torch.Tensor, state: torch.Tensor | None = None,
                control: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of shape (batch, time, vocab) and the new GRU state. ``control``: (batch, control_size)."""
        inputs = self.embedding(tokens)
        if control is not None and self.control is not None:
            inputs = inputs + self.control(control)[:, None, :]
        output, state = self.gru(inputs, state)
        return self.head(self.dropout(output)), state

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.parameters())
        return f"MidiGRU({self.config}, parameters={params:,})"

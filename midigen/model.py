"""The GRU language model over midigen tokens."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .checkpoint import Checkpoint, ModelConfig


class MidiGRU(nn.Module):
    """Embedding -> multi-layer GRU -> linear head giving next-token logits."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size)
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

    def forward(self, tokens: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of shape (batch, time, vocab) and the new GRU state."""
        output, state = self.gru(self.embedding(tokens), state)
        return self.head(self.dropout(output)), state

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.parameters())
        return f"MidiGRU({self.config}, parameters={params:,})"

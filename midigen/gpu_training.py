"""What training does differently on CUDA: bf16 autocast and a fused AdamW.

On the CPU both are off and training is plain float32.
"""

from __future__ import annotations

import torch
from torch import nn


def fused_optimizer(device: torch.device) -> bool:
    """Use AdamW's fused CUDA kernel (one launch per step instead of several per tensor)."""
    return device.type == "cuda"


def bf16_usable(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


class Bf16Autocast(nn.Module):
    """Runs the wrapped model's forward pass under bf16 autocast and returns float32 logits, so the loss and
    the backward pass outside it stay in float32 (bf16 needs no loss scaling)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, state: torch.Tensor | None = None,
                control: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits, state = self.model(tokens, state, control)
        return logits.float(), state


def for_training(model: nn.Module, device: torch.device) -> nn.Module:
    """The model to train on ``device``: under bf16 autocast where the GPU supports it, else itself."""
    return Bf16Autocast(model) if bf16_usable(device) else model

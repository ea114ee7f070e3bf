"""Training tokens per second of midigen's data-parallel step, on random tokens; started by torchrun.

    torchrun --standalone --nproc_per_node=N benchmarks/train_throughput.py --device cpu

Every process steps the model as ``midigen.train`` does (``distributed.wrap``, ``gpu_training.for_training``,
``train_step``) on its share of a global batch; rank 0 prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from midigen import distributed, gpu_training
from midigen.model import MidiGRU, ModelConfig
from midigen.train import TrainConfig, train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--plain", action="store_true", help="float32 and the default AdamW, even on CUDA")
    parser.add_argument("--model", default="{}", help="ModelConfig fields as JSON (default: the shipped sizes)")
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="global batch")
    parser.add_argument("--length", type=int, default=TrainConfig.sequence_length)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    ranks, device = distributed.setup(args.device)
    config = TrainConfig()
    model = MidiGRU(ModelConfig(**{"vocab_size": 275, **json.loads(args.model)})).to(device)
    fused = gpu_training.fused_optimizer(device) and not args.plain
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                                  fused=fused)
    trainer = distributed.wrap(model if args.plain else gpu_training.for_training(model, device), ranks, device, 0)
    rows = distributed.rank_batch_size(args.batch_size, ranks)
    block = torch.randint(3, model.config.vocab_size, (rows, args.length + 1), device=device)
    inputs, targets = block[:, :-1], block[:, 1:]
    # as in training, every window reads a control vector (zeros: nothing asked), so every parameter learns
    control = torch.zeros(rows, model.config.control_size, device=device) if model.config.control_size else None
    for _ in range(2):  # warm-up: allocations, cuDNN plans, the process group's first buffers
        train_step(trainer, optimizer, inputs, targets, config.grad_clip, None, control)
    distributed.barrier(ranks)
    started = time.perf_counter()
    for _ in range(args.steps):
        train_step(trainer, optimizer, inputs, targets, config.grad_clip, None, control)  # .item() waits
    distributed.barrier(ranks)
    elapsed = time.perf_counter() - started
    tokens_per_s = args.steps * args.batch_size * args.length / elapsed
    if ranks.is_main:
        print(json.dumps({"processes": ranks.world_size, "device": str(device), "threads": torch.get_num_threads(),
                          "bf16": not args.plain and gpu_training.bf16_usable(device), "fused": fused,
                          "tokens_per_s": tokens_per_s, "tokens_per_s_per_process": tokens_per_s / ranks.world_size}))


if __name__ == "__main__":
    main()

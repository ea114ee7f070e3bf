"""Data-parallel training with ``torch.distributed``, as started by ``torchrun``.

Under torchrun (``WORLD_SIZE`` > 1) every process joins one process group (gloo on the CPU, NCCL on CUDA,
one GPU per process), trains on its own shard of the training files and averages gradients through
``DistributedDataParallel``; ``--batch-size`` is the global batch, split evenly over the processes.
Only rank 0 writes files, logs and shows progress bars. Started plainly, everything here is a no-op.
"""

from __future__ import annotations

import atexit
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .device import resolve_device

# Rank 0 may tokenize a folder while the others wait, so collective calls may wait this long.
TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1


def setup(device: str) -> tuple[Ranks, torch.device]:
    """Join torchrun's process group when started by it; return this process's ranks and device."""
    chosen = torch.device(resolve_device(device))
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Ranks(), chosen
    if chosen.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"process {local_rank} on this node has no GPU of its own "
                               f"({torch.cuda.device_count()} GPUs): start at most one process per GPU")
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo", timeout=TIMEOUT,
                                device_id=chosen if chosen.type == "cuda" else None)
        atexit.register(dist.destroy_process_group)
    return Ranks(dist.get_rank(), dist.get_world_size()), chosen


def say(ranks: Ranks, text: str) -> None:
    """Log a line, from rank 0 only."""
    if ranks.is_main:
        tqdm.write(text)


def barrier(ranks: Ranks) -> None:
    if ranks.parallel:
        dist.barrier()


@contextmanager
def main_first(ranks: Ranks):
    """Rank 0 runs the block first (e.g. writes a cache), the others after it."""
    if not ranks.is_main:
        barrier(ranks)
    yield
    if ranks.is_main:
        barrier(ranks)


def shard(items: list, ranks: Ranks) -> list:
    """This rank's share of ``items``: every world_size-th one, starting at its rank."""
    return items[ranks.rank :: ranks.world_size]


def training_shard(pieces: list, ranks: Ranks) -> list:
    if len(pieces) < ranks.world_size:
        raise ValueError(f"{len(pieces)} training files cannot be shared by {ranks.world_size} processes")
    return shard(pieces, ranks)


def rank_batch_size(batch_size: int, ranks: Ranks) -> int:
    """Windows per step on this rank, for a global batch of ``batch_size``."""
    if batch_size % ranks.world_size:
        raise ValueError(f"the batch size ({batch_size}) must be a multiple of the number of processes "
                         f"({ranks.world_size})")
    return batch_size // ranks.world_size


def common_steps(steps: int, ranks: Ranks) -> int:
    """The fewest steps any rank can take this epoch: every rank must take part in every gradient average."""
    if not ranks.parallel:
        return steps
    count = torch.tensor(steps, dtype=torch.int64, device=_collective_device())
    dist.all_reduce(count, op=dist.ReduceOp.MIN)
    return int(count)


def wrap(model: torch.nn.Module, ranks: Ranks, device: torch.device, random_seed: int) -> torch.nn.Module:
    """The model to train: ``DistributedDataParallel`` around it when parallel (each rank then draws its own
    dropout masks from ``random_seed + rank``), else the model itself."""
    if not ranks.parallel:
        return model
    torch.manual_seed(random_seed + ranks.rank)
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def sum_validation(metrics: dict, ranks: Ranks) -> dict:
    """Validation figures over all ranks' shards, from each rank's ``validation_loss`` result."""
    if not ranks.parallel:
        return metrics
    tokens, notes = metrics.get("tokens", 0), metrics.get("notes", 0)
    totals = torch.tensor([metrics.get("nll_per_token", 0.0) * tokens, tokens, notes], dtype=torch.float64,
                          device=_collective_device())
    dist.all_reduce(totals)
    total, tokens, notes = totals.tolist()
    if tokens == 0:
        return {}
    tokens, notes = round(tokens), round(notes)
    return {"nll_per_token": total / tokens, "nll_per_note": total / max(notes, 1), "tokens": tokens, "notes": notes}


def _collective_device() -> torch.device:
    """NCCL reduces tensors on the GPU, gloo on the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")

"""One optimizer step of midigen's training on a fixed global batch, run by torchrun with any number of processes.

    torchrun --nproc_per_node=N tests/distributed_step.py OUT.safetensors

Each process takes its rows of the batch (``distributed.shard``) and steps the model through
``distributed.wrap`` and ``train.train_step``; rank 0 writes the resulting weights.
"""

import sys

import torch
from safetensors.torch import save_file

from midigen import distributed
from midigen.model import MidiGRU, ModelConfig
from midigen.train import TrainConfig, train_step

GLOBAL_BATCH, LENGTH = 4, 24
MODEL = ModelConfig(vocab_size=40, embedding_size=8, hidden_size=16, num_layers=2, dropout=0.0)


def main(out: str) -> None:
    torch.set_num_threads(1)
    ranks, device = distributed.setup("cpu")
    torch.manual_seed(0)
    model = MidiGRU(MODEL)
    config = TrainConfig(learning_rate=0.05, grad_clip=0.5)  # clipping is active at this learning rate
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    trainer = distributed.wrap(model, ranks, device, random_seed=0)
    block = torch.randint(1, MODEL.vocab_size, (GLOBAL_BATCH, LENGTH + 1), generator=torch.Generator().manual_seed(1))
    rows = torch.stack(distributed.shard(list(block), ranks))
    assert len(rows) == distributed.rank_batch_size(GLOBAL_BATCH, ranks)
    train_step(trainer, optimizer, rows[:, :-1], rows[:, 1:], config.grad_clip)
    if ranks.is_main:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out)
    distributed.barrier(ranks)  # no rank tears the group down while another still uses it (gloo aborts then)


if __name__ == "__main__":
    main(sys.argv[1])

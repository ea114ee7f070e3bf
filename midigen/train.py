"""Training the GRU on a folder of MIDI files.

Files are split into training and validation sets by file (a fixed, seeded
shuffle). Each epoch cuts the training token streams into windows at random
offsets and transposes every window by a random interval. The checkpoint with
the best validation loss is kept; ``NAME.train.*`` holds the last state so a
run can resume.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F
from tqdm import tqdm

from . import checkpoint, distributed, gpu_training, prepare
from .model import MidiGRU, ModelConfig
from .tokenizer import Tokenizer, TokenizerConfig


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; saved in the checkpoint's JSON."""

    epochs: int = 40
    batch_size: int = 32
    sequence_length: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    validation_share: float = 0.1
    transpose: int = 5
    seed: int = 0


@dataclass
class Piece:
    name: str
    tokens: np.ndarray
    notes: int


def split_by_file(pieces: list[Piece], share: float, seed: int) -> tuple[list[Piece], list[Piece]]:
    """A seeded split by file; at least one validation file when there are two or more."""
    order = sorted(pieces, key=lambda p: p.name)
    random.Random(seed).shuffle(order)
    count = max(1, round(len(order) * share)) if len(order) > 1 else 0
    return order[count:], order[:count]


def transpose(tokens: np.ndarray, semitones: int, tokenizer: Tokenizer) -> np.ndarray:
    """Shift PITCH tokens; notes leaving the range are folded back by octaves."""
    if semitones == 0:
        return tokens
    pitches = tokenizer.vocab.kind_ranges()["PITCH"]
    is_pitch = (tokens >= pitches.start) & (tokens < pitches.stop)
    c = tokenizer.config
    moved = tokens[is_pitch] - pitches.start + c.pitch_min + semitones
    moved = np.where(moved < c.pitch_min, moved + 12 * np.ceil((c.pitch_min - moved) / 12), moved)
    moved = np.where(moved > c.pitch_max, moved - 12 * np.ceil((moved - c.pitch_max) / 12), moved).astype(np.int64)
    out = tokens.copy()
    out[is_pitch] = moved - c.pitch_min + pitches.start
    return out


def training_windows(pieces: list[Piece], config: TrainConfig, tokenizer: Tokenizer, rng: random.Random):
    """One epoch of (input, target) windows, shuffled, randomly offset and transposed."""
    length = config.sequence_length + 1
    windows = []
    for piece in pieces:
        offset = rng.randrange(config.sequence_length)
        for start in range(-offset, len(piece.tokens) - 1, config.sequence_length):
            window = piece.tokens[max(start, 0) : start + length]
            if len(window) < 2:
                continue
            window = transpose(window, rng.randint(-config.transpose, config.transpose), tokenizer)
            padded = np.zeros(length, dtype=np.int64)
            padded[: len(window)] = window
            windows.append(padded)
    rng.shuffle(windows)
    return windows


def batches(windows: list[np.ndarray], batch_size: int):
    for i in range(0, len(windows), batch_size):
        block = torch.from_numpy(np.stack(windows[i : i + batch_size]))
        yield block[:, :-1], block[:, 1:]


def train_step(model: MidiGRU, optimizer, inputs: torch.Tensor, targets: torch.Tensor, grad_clip: float) -> float:
    """One optimisation step on a batch (PAD targets ignored); returns the loss."""
    logits, _ = model(inputs)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


@torch.no_grad()
def validation_loss(model: MidiGRU, pieces: list[Piece], device: torch.device | str) -> dict:
    """Negative log-likelihood (nats) of whole validation pieces, per token and per note."""
    model.eval()
    total, tokens, notes = 0.0, 0, 0
    for piece in pieces:
        sequence = torch.from_numpy(piece.tokens).to(device)[None]
        logits, _ = model(sequence[:, :-1])
        total += F.cross_entropy(logits[0], sequence[0, 1:], reduction="sum").item()
        tokens += sequence.shape[1] - 1
        notes += piece.notes
    model.train()
    if tokens == 0:
        return {}
    return {"nll_per_token": total / tokens, "nll_per_note": total / max(notes, 1), "tokens": tokens, "notes": notes}


def data_description(folder: Path, train: list[Piece], valid: list[Piece]) -> dict:
    names = sorted(p.name for p in train + valid)
    return {
        "folder": folder.name,
        "files": len(names),
        "files_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest(),
        "train_files": len(train),
        "validation_files": sorted(p.name for p in valid),
        "train_notes": sum(p.notes for p in train),
        "train_tokens": sum(len(p.tokens) for p in train),
    }


def state_paths(out: Path) -> tuple[Path, Path]:
    return out.with_name(out.name + ".train.safetensors"), out.with_name(out.name + ".train.json")


def save_state(out: Path, model, optimizer, epoch: int, best: float, history: list) -> None:
    """Last model and optimizer state for --resume, as safetensors + JSON."""
    tensor_path, json_path = state_paths(out)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    names = dict(model.named_parameters())
    steps = {}
    for name, param in names.items():
        state = optimizer.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                tensors[f"optim.{name}.{key}"] = state[key].detach().cpu().contiguous()
        if "step" in state:
            steps[name] = float(state["step"])
    save_file(tensors, str(tensor_path))
    json_path.write_text(json.dumps({"epoch": epoch, "best": best, "history": history, "steps": steps}, indent=1))


def load_state(out: Path, model, optimizer, device) -> tuple[int, float, list]:
    tensor_path, json_path = state_paths(out)
    meta = json.loads(json_path.read_text())
    tensors = load_file(str(tensor_path), device=str(device))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for name, param in model.named_parameters():
        if name in meta["steps"]:
            optimizer.state[param] = {
                "step": torch.tensor(meta["steps"][name], device=param.device if optimizer.defaults["fused"] else None),
                "exp_avg": tensors[f"optim.{name}.exp_avg"],
                "exp_avg_sq": tensors[f"optim.{name}.exp_avg_sq"],
            }
    return meta["epoch"], meta["best"], meta["history"]


def train(
    data: str | Path,
    out: str | Path,
    config: TrainConfig | None = None,
    model_config: dict | None = None,
    tokenizer_config: TokenizerConfig | None = None,
    device: str = "auto",
    resume: bool = False,
) -> dict:
    """Train on a token cache or every MIDI file under ``data``; write the best checkpoint to ``out``.

    Returns the checkpoint's metadata, including the final validation figures. Under torchrun, every process
    trains on its shard of the files and only rank 0 writes (``midigen.distributed``).
    """
    data, out = Path(data), Path(out)
    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    ranks, dev = distributed.setup(device)
    tokenizer = Tokenizer(tokenizer_config or TokenizerConfig())
    with distributed.main_first(ranks):  # rank 0 tokenizes a folder, the others then read its cache
        cache = prepare.training_cache(data, out, tokenizer.config, update=ranks.is_main)
    pieces = [Piece(*piece) for piece in cache.pieces()]
    if not pieces:
        raise ValueError(f"no readable MIDI files with notes in {data}")
    train_set, valid_set = split_by_file(pieces, config.validation_share, config.seed)
    model_cfg = ModelConfig(vocab_size=len(tokenizer.vocab), **(model_config or {}))
    model = MidiGRU(model_cfg).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                                  fused=gpu_training.fused_optimizer(dev))
    first_epoch, best, history = 0, math.inf, []
    if resume and state_paths(out)[1].is_file():
        first_epoch, best, history = load_state(out, model, optimizer, dev)
        distributed.say(ranks, f"resuming after epoch {first_epoch}, best validation loss {best:.4f}")
    # -- data parallelism: what this rank trains on, and the model it steps --
    trainer = distributed.wrap(gpu_training.for_training(model, dev), ranks, dev, config.seed)
    rank_train, rank_valid = distributed.training_shard(train_set, ranks), distributed.shard(valid_set, ranks)
    rank_batch = distributed.rank_batch_size(config.batch_size, ranks)
    description = data_description(data, train_set, valid_set)
    distributed.say(ranks, f"{model}\n{len(train_set)} training files, {len(valid_set)} validation files, "
                    f"device {dev}, {ranks.world_size} process(es)")
    started = time.perf_counter()
    trained_tokens = 0
    for epoch in range(first_epoch, config.epochs):
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))
        windows = training_windows(rank_train, config, tokenizer, random.Random(config.seed * 1000 + epoch))
        steps = distributed.common_steps(math.ceil(len(windows) / rank_batch), ranks)
        progress = tqdm(itertools.islice(batches(windows, rank_batch), steps), total=steps,
                        desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False, disable=not ranks.is_main)
        running = None
        for inputs, targets in progress:
            inputs, targets = inputs.to(dev), targets.to(dev)
            loss = train_step(trainer, optimizer, inputs, targets, config.grad_clip)
            trained_tokens += int((targets != 0).sum())
            running = loss if running is None else 0.95 * running + 0.05 * loss
            progress.set_postfix(loss=f"{running:.3f}")
        metrics = distributed.sum_validation(validation_loss(model, rank_valid, dev), ranks)
        valid = metrics.get("nll_per_token", running)
        history.append({"epoch": epoch + 1, "train_loss": round(running, 4), "valid_loss": round(valid, 4)})
        distributed.say(ranks, f"epoch {epoch + 1}: train loss {running:.4f}, validation loss {valid:.4f}"
                   + (f" ({metrics['nll_per_note']:.3f} nats/note)" if metrics else ""))
        if valid < best:
            best = valid
            if ranks.is_main:
                save_checkpoint(out, model, tokenizer, config, description, metrics, history)
        if ranks.is_main:
            save_state(out, model, optimizer, epoch + 1, best, history)
    elapsed = time.perf_counter() - started
    distributed.barrier(ranks)
    meta = checkpoint.load(out).info
    distributed.say(ranks, f"best validation: {meta['validation']}; "
                    f"{trained_tokens / max(elapsed, 1e-9):,.0f} tokens/s per process")
    return meta


def save_checkpoint(out, model, tokenizer, config, description, metrics, history) -> None:
    tensors = {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}
    info = {
        "training": {**asdict(config), "data": description, "history": history},
        "validation": metrics,
    }
    checkpoint.save(checkpoint.Checkpoint(model.config, tokenizer.config, tensors, info), out)

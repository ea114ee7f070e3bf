"""Training the GRU on a folder of MIDI files.

Files are split into training and validation sets by file (a fixed, seeded
shuffle). Each epoch transposes every training piece by a random interval and
reads it whole, as one of ``batch_size`` parallel streams: the piece is cut into
consecutive windows and the GRU state is carried from one window to the next
(truncated back-propagation through time), so the model learns to write the
1,000th note as well as the 10th. Every window also gets the control vector of
its own notes (key profile, register, density, loudness; ``midigen.controls``),
each part hidden at random so that the model also writes without it. The
checkpoint with the best validation loss is kept; ``NAME.train.*`` holds the
last state so a run can resume.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F
from tqdm import tqdm

from . import checkpoint, distributed, gpu_training, prepare
from .checkpoint import ModelConfig, TrainConfig
from .controls import CONTROL_SIZE, ControlLevels, Controls, TokenNotes
from .model import MidiGRU
from .tokenizer import Tokenizer, TokenizerConfig


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


@dataclass
class Window:
    """One training window: input and target tokens, the control vector of its notes, and whether
    it starts a piece (its row's state is reset)."""

    inputs: np.ndarray
    targets: np.ndarray
    control: np.ndarray
    first: bool


def piece_windows(tokens: np.ndarray, length: int, tokenizer: Tokenizer, hide=None) -> list[Window]:
    """A whole piece as consecutive windows of ``length`` tokens (the last padded with PAD)."""
    notes = TokenNotes.of(tokens, tokenizer)
    windows = []
    for start in range(0, len(tokens) - 1, length):
        inputs = np.zeros(length, dtype=np.int64)
        targets = np.zeros(length, dtype=np.int64)
        chunk = tokens[start : start + length + 1]
        inputs[: len(chunk) - 1], targets[: len(chunk) - 1] = chunk[:-1], chunk[1:]
        controls = notes.controls(start + 1, start + length + 1, tokenizer.config.steps_per_beat)
        windows.append(Window(inputs, targets, (hide(controls) if hide else controls).vector(), start == 0))
    return windows


def hide_parts(rng: random.Random, share: float):
    """A function hiding each part of a ``Controls`` with probability ``share``."""

    def hide(controls: Controls) -> Controls:
        return controls.replace(**{name: None for name in ("profile", "mean_pitch", "notes_per_beat", "mean_velocity")
                                   if rng.random() < share})

    return hide


def stream_batches(pieces: list[Piece], config: TrainConfig, tokenizer: Tokenizer, rng: random.Random):
    """One epoch of batches ``(inputs, targets, controls, first)``: every training piece, transposed, read
    whole by one of ``batch_size`` streams (row ``i`` of batch ``t + 1`` continues row ``i`` of batch ``t``).
    The window length varies by epoch (3/4 to 5/4 of ``sequence_length``) so window edges move."""
    length = rng.randint(config.sequence_length * 3 // 4, config.sequence_length * 5 // 4)
    hide = hide_parts(rng, config.control_dropout)
    order = list(pieces)
    rng.shuffle(order)
    streams: list[list[Window]] = [[] for _ in range(min(config.batch_size, len(order)))]
    # a piece longer than a stream's share is read as several parts, each from a fresh state
    share = math.ceil(sum(len(p.tokens) for p in pieces) / len(streams) / length)
    parts = []
    for piece in order:
        tokens = transpose(piece.tokens, rng.randint(-config.transpose, config.transpose), tokenizer)
        windows = piece_windows(tokens, length, tokenizer, hide)
        for part in np.array_split(np.arange(len(windows)), math.ceil(len(windows) / share)):
            windows[part[0]].first = True
            parts.append([windows[i] for i in part])
    assigned: list[list[list[Window]]] = [[] for _ in streams]
    for part in sorted(parts, key=len, reverse=True):  # longest first, each to the least busy stream
        min(assigned, key=lambda s: sum(map(len, s))).append(part)
    for stream, stream_parts in zip(streams, assigned, strict=True):
        rng.shuffle(stream_parts)
        stream.extend(w for part in stream_parts for w in part)
    idle = Window(np.zeros(length, np.int64), np.zeros(length, np.int64), np.zeros(CONTROL_SIZE, np.float32), True)
    for step in range(max(len(s) for s in streams)):
        rows = [s[step] if step < len(s) else idle for s in streams]
        yield tuple(torch.from_numpy(np.stack([getattr(w, part) for w in rows]))
                    for part in ("inputs", "targets", "control", "first"))


def train_step(model: MidiGRU, optimizer, inputs: torch.Tensor, targets: torch.Tensor, grad_clip: float,
               state: torch.Tensor | None = None, control: torch.Tensor | None = None):
    """One optimisation step on a batch (PAD targets ignored); returns the loss and the final state,
    detached, to carry into the next window."""
    logits, state = model(inputs, state, control)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item(), state.detach()


@torch.no_grad()
def validation_loss(model: MidiGRU, pieces: list[Piece], device: torch.device | str, tokenizer: Tokenizer | None = None,
                    window: int = 256) -> dict:
    """Negative log-likelihood (nats) of whole validation pieces, per token and per note.

    With a ``tokenizer`` (and a model that reads controls), each ``window`` of tokens gets the control
    vector of its own notes, as in training; without, the controls are all unknown.
    """
    model.eval()
    total, tokens, notes = 0.0, 0, 0
    for piece in pieces:
        sequence = torch.from_numpy(piece.tokens).to(device)[None]
        if tokenizer is None or model.control is None:
            logits, _ = model(sequence[:, :-1])
        else:
            state, parts = None, []
            for w in piece_windows(piece.tokens, window, tokenizer):
                size = int((torch.from_numpy(w.targets) != 0).sum())
                control = torch.from_numpy(w.control).to(device)[None]
                out, state = model(torch.from_numpy(w.inputs[:size]).to(device)[None], state, control)
                parts.append(out)
            logits = torch.cat(parts, dim=1)
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
    controls = CONTROL_SIZE if config.control_dropout < 1 else 0  # always hidden: a model without controls
    model_cfg = ModelConfig(vocab_size=len(tokenizer.vocab), **{"control_size": controls, **(model_config or {})})
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
    levels = control_levels(train_set, tokenizer, config.sequence_length)
    distributed.say(ranks, f"{model}\n{len(train_set)} training files, {len(valid_set)} validation files, "
                    f"device {dev}, {ranks.world_size} process(es)")
    started = time.perf_counter()
    trained_tokens = 0
    for epoch in range(first_epoch, config.epochs):
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))
        rng = random.Random(config.seed * 1000 + epoch)
        epoch_batches = list(stream_batches(rank_train, replace(config, batch_size=rank_batch), tokenizer, rng))
        steps = distributed.common_steps(len(epoch_batches), ranks)  # every rank steps as often as the others
        progress = tqdm(epoch_batches[:steps], desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
                        leave=False, disable=not ranks.is_main)
        running, state = None, None
        for inputs, targets, control, first in progress:
            inputs, targets, control = inputs.to(dev), targets.to(dev), control.to(dev)
            if state is not None:
                state = state * (~first.to(dev))[None, :, None]
            loss, state = train_step(trainer, optimizer, inputs, targets, config.grad_clip, state, control)
            trained_tokens += int((targets != 0).sum())
            running = loss if running is None else 0.95 * running + 0.05 * loss
            progress.set_postfix(loss=f"{running:.3f}")
        metrics = distributed.sum_validation(
            validation_loss(model, rank_valid, dev, tokenizer, config.sequence_length), ranks)
        valid = metrics.get("nll_per_token", running)
        history.append({"epoch": epoch + 1, "train_loss": round(running, 4), "valid_loss": round(valid, 4)})
        distributed.say(ranks, f"epoch {epoch + 1}: train loss {running:.4f}, validation loss {valid:.4f}"
                   + (f" ({metrics['nll_per_note']:.3f} nats/note)" if metrics else ""))
        if valid < best:
            best = valid
            free = distributed.sum_validation(validation_loss(model, rank_valid, dev), ranks)
            metrics = {**metrics, "without_controls": {k: free[k] for k in ("nll_per_token", "nll_per_note")}}
            if ranks.is_main:
                save_checkpoint(out, model, tokenizer, config, description, metrics, history, levels)
        if ranks.is_main:
            save_state(out, model, optimizer, epoch + 1, best, history)
    elapsed = time.perf_counter() - started
    distributed.barrier(ranks)
    meta = checkpoint.load(out).info
    distributed.say(ranks, f"best validation: {meta['validation']}; "
                    f"{trained_tokens / max(elapsed, 1e-9):,.0f} tokens/s per process")
    return meta


def control_levels(pieces: list[Piece], tokenizer: Tokenizer, length: int) -> ControlLevels:
    """Typical key profiles and density levels of the training pieces' windows."""
    passages = []
    for piece in pieces:
        notes = TokenNotes.of(piece.tokens, tokenizer)
        for start in range(0, len(piece.tokens), length):
            controls = notes.controls(start, start + length, tokenizer.config.steps_per_beat)
            if controls.profile is not None and sum(controls.profile) > 0:
                passages.append(controls)
    return ControlLevels.measure(passages)


def save_checkpoint(out, model, tokenizer, config, description, metrics, history, levels=None) -> None:
    tensors = {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}
    info = {
        "training": {**asdict(config), "data": description, "history": history},
        "validation": metrics,
        **({"controls": levels.to_dict()} if levels else {}),
    }
    checkpoint.save(checkpoint.Checkpoint(model.config, tokenizer.config, tensors, info), out)

"""Training the GRU on a folder of MIDI files.

Files are split into training and validation sets by file (a fixed, seeded
shuffle, or the collection's own ``validation/`` folder). Each epoch transposes
every training piece by a random interval and reads it whole, as one of
``batch_size`` parallel streams: the piece is cut into consecutive windows and
the GRU state is carried from one window to the next (truncated
back-propagation through time), so the model learns to write the 1,000th note
as well as the 10th. Every window also gets the control vector of its own notes
(key profile, register, density, loudness; ``midigen.controls``), each part
hidden at random so that the model also writes without it. An epoch is planned
from the pieces' lengths alone (``schedule_epoch``) and a piece's windows are
built only when its stream reaches it (``EpochBatches``), so the memory in use
does not grow with the collection. The checkpoint with the best validation loss
is kept; ``NAME.train.*`` holds the last state so a run can resume.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from itertools import chain, islice
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F
from tqdm import tqdm

from . import checkpoint, distributed, gpu_training, prepare
from .checkpoint import ModelConfig, TrainConfig
from .controls import CONTROL_SIZE, ControlLevels, Controls, TokenNotes
from .corpus import VALIDATION_FOLDER
from .model import MidiGRU
from .tokenizer import Tokenizer, TokenizerConfig

STRETCH_WINDOWS = 16  # windows built from one stretch of a piece (with its notes read once)


@dataclass
class Piece:
    name: str
    tokens: np.ndarray
    notes: int
    loudness: list[list[int]] = field(default_factory=list)  # per velocity level: [sum of velocities, notes]


def split_by_file(pieces: list[Piece], share: float, random_seed: int) -> tuple[list[Piece], list[Piece]]:
    """A seeded split by file; at least one validation file when there are two or more.

    A collection with a ``validation/`` folder (as ``midigen corpus`` writes) is split by that folder instead.
    """
    held_out = [p for p in pieces if p.name.startswith(f"{VALIDATION_FOLDER}/")]
    if held_out:
        return [p for p in pieces if not p.name.startswith(f"{VALIDATION_FOLDER}/")], held_out
    order = sorted(pieces, key=lambda p: p.name)
    random.Random(random_seed).shuffle(order)
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
    it starts a piece or part (its row's state is reset)."""

    inputs: np.ndarray
    targets: np.ndarray
    control: np.ndarray
    first: bool


def window_count(tokens: int, length: int) -> int:
    """Windows of ``length`` tokens needed to predict every token after the first of a piece."""
    return max(0, math.ceil((tokens - 1) / length))


def piece_windows(tokens: np.ndarray, length: int, tokenizer: Tokenizer, hide=None, semitones: int = 0,
                  numbers: range | None = None) -> Iterator[Window]:
    """A piece transposed by ``semitones`` as consecutive windows of ``length`` tokens (the last padded with
    PAD): all of them, or those numbered in ``numbers``. They are built one by one, from stretches of at most
    ``STRETCH_WINDOWS`` windows of the piece, so the memory they take does not depend on the piece's length.
    The first window yielded starts a fresh state."""
    numbers = range(window_count(len(tokens), length)) if numbers is None else numbers
    for block in range(numbers.start, numbers.stop, STRETCH_WINDOWS):
        begin, stop = block * length, min(block + STRETCH_WINDOWS, numbers.stop)
        # one token past the last target: the duration of a note ending the stretch
        stretch = transpose(np.asarray(tokens[begin : stop * length + 2]), semitones, tokenizer)
        notes = TokenNotes.of(stretch, tokenizer, level_before(tokens, begin, tokenizer))
        for number in range(block, stop):
            start = number * length - begin
            inputs = np.zeros(length, dtype=np.int64)
            targets = np.zeros(length, dtype=np.int64)
            chunk = stretch[start : start + length + 1]
            inputs[: len(chunk) - 1], targets[: len(chunk) - 1] = chunk[:-1], chunk[1:]
            controls = notes.controls(start + 1, start + length + 1, tokenizer.config.steps_per_beat)
            yield Window(inputs, targets, (hide(controls) if hide else controls).vector(), number == numbers.start)


def level_before(tokens: np.ndarray, index: int, tokenizer: Tokenizer, block: int = 4096) -> int | None:
    """The velocity level last set before ``tokens[index]`` (None: none yet), looked for backwards by blocks."""
    velocities = tokenizer.vocab.kind_ranges()["VELOCITY"]
    for stop in range(index, 0, -block):
        found = np.asarray(tokens[max(0, stop - block) : stop])
        found = found[(found >= velocities.start) & (found < velocities.stop)]
        if len(found):
            return int(found[-1]) - velocities.start
    return None


def hide_parts(rng: random.Random, share: float):
    """A function hiding each part of a ``Controls`` with probability ``share``."""

    def hide(controls: Controls) -> Controls:
        return controls.replace(**{name: None for name in ("profile", "mean_pitch", "notes_per_beat", "mean_velocity")
                                   if rng.random() < share})

    return hide


@dataclass(frozen=True, slots=True)
class Part:
    """The windows ``numbers`` of piece ``piece``, transposed by ``semitones``, read by one stream from a
    fresh state."""

    piece: int
    semitones: int
    numbers: range


@dataclass(frozen=True)
class Schedule:
    """One epoch's plan, made from the pieces' lengths alone: the window length, each stream's parts in the
    order it reads them, and the seed of the draws that hide parts of the controls."""

    length: int
    streams: tuple[tuple[Part, ...], ...]
    control_dropout: float
    hide_seed: int

    @property
    def steps(self) -> int:
        """Batches in the epoch: the windows of the busiest stream."""
        return max((sum(len(part.numbers) for part in stream) for stream in self.streams), default=0)


def schedule_epoch(lengths: list[int], config: TrainConfig, rng: random.Random) -> Schedule:
    """Every piece (by its token count), transposed at random, shared out to ``batch_size`` streams: a piece
    longer than a stream's share is cut into parts, and parts go longest first to the least busy stream, which
    reads its parts in a random order. The window length varies by epoch (3/4 to 5/4 of ``sequence_length``) so
    window edges move."""
    length = rng.randint(config.sequence_length * 3 // 4, config.sequence_length * 5 // 4)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    streams = max(1, min(config.batch_size, len(order)))
    share = max(1, math.ceil(sum(lengths) / streams / length))  # windows per stream
    parts = []
    for piece in order:
        semitones = rng.randint(-config.transpose, config.transpose)
        count = window_count(lengths[piece], length)
        cuts = math.ceil(count / share)
        parts += [Part(piece, semitones, range(i * count // cuts, (i + 1) * count // cuts)) for i in range(cuts)]
    assigned: list[list[Part]] = [[] for _ in range(streams)]
    load = [(0, stream) for stream in range(streams)]  # (windows, stream): a heap, least busy first
    for part in sorted(parts, key=lambda p: len(p.numbers), reverse=True):
        windows, stream = heapq.heappop(load)
        assigned[stream].append(part)
        heapq.heappush(load, (windows + len(part.numbers), stream))
    for stream_parts in assigned:
        rng.shuffle(stream_parts)
    return Schedule(length, tuple(map(tuple, assigned)), config.control_dropout, rng.getrandbits(64))


class EpochBatches:
    """One epoch of batches ``(inputs, targets, controls, first)`` following a ``Schedule``: row ``i`` of
    batch ``t + 1`` continues row ``i`` of batch ``t``, and ``first`` marks the rows that start a part. Its
    length is the schedule's step count; a part's windows are built only when its stream reaches them, so the
    memory in use is one stretch of windows per stream, whatever the size of the collection."""

    def __init__(self, pieces: list[Piece], schedule: Schedule, tokenizer: Tokenizer):
        self.pieces, self.schedule, self.tokenizer = pieces, schedule, tokenizer

    def __len__(self) -> int:
        return self.schedule.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        s = self.schedule
        hide = hide_parts(random.Random(s.hide_seed), s.control_dropout)
        streams = [chain.from_iterable(piece_windows(self.pieces[p.piece].tokens, s.length, self.tokenizer, hide,
                                                     p.semitones, p.numbers) for p in parts) for parts in s.streams]
        idle = Window(np.zeros(s.length, np.int64), np.zeros(s.length, np.int64), np.zeros(CONTROL_SIZE, np.float32),
                      True)
        for _ in range(s.steps):
            yield batch_of([next(stream, idle) for stream in streams])


def batch_of(rows: list[Window]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(inputs, targets, controls, first)`` of one window per row."""

    def stacked(part: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([getattr(w, part) for w in rows]))

    return stacked("inputs"), stacked("targets"), stacked("control"), stacked("first")


def stream_batches(pieces: list[Piece], config: TrainConfig, tokenizer: Tokenizer,
                   rng: random.Random) -> EpochBatches:
    """One epoch of batches: every training piece, transposed, read whole by one of ``batch_size`` streams
    (``schedule_epoch``), its windows built as they are read (``EpochBatches``)."""
    return EpochBatches(pieces, schedule_epoch([len(p.tokens) for p in pieces], config, rng), tokenizer)


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
        batches = stream_batches(rank_train, replace(config, batch_size=rank_batch), tokenizer, rng)
        steps = distributed.common_steps(len(batches), ranks)  # every rank steps as often as the others
        progress = tqdm(islice(batches, steps), total=steps, desc=f"epoch {epoch + 1}/{config.epochs}",
                        unit="batch", leave=False, disable=not ranks.is_main)
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
    """Typical key profiles and density levels of the training pieces' windows, and each piece's character,
    measured a piece at a time."""
    spb = tokenizer.config.steps_per_beat

    def passages() -> Iterator[Controls]:
        for piece in pieces:
            notes = TokenNotes.of(piece.tokens, tokenizer)
            for start in range(0, len(piece.tokens), length):
                controls = notes.controls(start, start + length, spb)
                if controls.profile is not None and sum(controls.profile) > 0:
                    yield controls

    characters = (TokenNotes.of(piece.tokens, tokenizer).controls(0, len(piece.tokens), spb) for piece in pieces)
    return ControlLevels.measure(passages(), characters, [piece.loudness for piece in pieces])


def save_checkpoint(out, model, tokenizer, config, description, metrics, history, levels=None) -> None:
    tensors = {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}
    info = {
        "training": {**asdict(config), "data": description, "history": history},
        "validation": metrics,
        **({"controls": levels.to_dict()} if levels else {}),
    }
    checkpoint.save(checkpoint.Checkpoint(model.config, tokenizer.config, tensors, info), out)

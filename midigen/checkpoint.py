"""Checkpoints: tensors in safetensors, everything else in a JSON file beside them.

``weights/NAME.safetensors`` holds the state dict; ``weights/NAME.json`` holds the
model and tokenizer configs, the training description, validation metrics and
the SHA-256 of the tensor file, checked at load. No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from .tokenizer import TokenizerConfig

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "midigen-ff-piano"


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the network (``midigen.model.MidiGRU``); saved in the checkpoint so the model can be rebuilt."""

    vocab_size: int
    embedding_size: int = 128
    hidden_size: int = 256
    num_layers: int = 2
    dropout: float = field(default=0.2, metadata={"help": "dropout between and after the GRU layers"})
    control_size: int = 0  # 0: no control input (checkpoints written before controls existed)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return cls(**data)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (``midigen.train``); saved in the checkpoint's JSON. The ``train`` command's
    flags are made from these fields and ``ModelConfig``'s, with their defaults and help."""

    epochs: int = 40
    batch_size: int = field(default=32, metadata={"help": "parallel piece streams per step, over all processes"})
    sequence_length: int = field(default=256, metadata={"help": "tokens per window of back-propagation"})
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    grad_clip: float = field(default=1.0, metadata={"help": "largest gradient norm"})
    validation_share: float = field(default=0.1, metadata={"help": "share of the files held out, by file"})
    transpose: int = field(default=5, metadata={"help": "largest random transposition, semitones"})
    seed: int = 0
    control_dropout: float = field(default=0.25, metadata={
        "help": "chance that a part of a window's control vector is hidden (1: a model without controls)"})


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt or does not match its description."""


@dataclass
class Checkpoint:
    """Model weights (as NumPy arrays) plus the metadata needed to use them."""

    model_config: ModelConfig
    tokenizer_config: TokenizerConfig
    tensors: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Checkpoint({self.model_config}, {len(self.tensors)} tensors)"


def paths(base: str | Path) -> tuple[Path, Path]:
    """(tensor file, JSON file) of checkpoint ``base`` (with or without suffix)."""
    base = Path(base)
    if base.suffix in (".json", ".safetensors"):
        base = base.with_suffix("")
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save(checkpoint: Checkpoint, base: str | Path) -> Path:
    """Write both files (tensor file first, so the JSON's checksum matches it)."""
    tensor_path, json_path = paths(base)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: np.ascontiguousarray(array) for name, array in checkpoint.tensors.items()}
    save_file(tensors, str(tensor_path))
    meta = {
        "format": "midigen-checkpoint-1",
        "model": checkpoint.model_config.to_dict(),
        "tokenizer": checkpoint.tokenizer_config.to_dict(),
        "sha256": sha256(tensor_path),
        **checkpoint.info,
    }
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmp.replace(json_path)
    return json_path


def load(base: str | Path = DEFAULT_WEIGHTS) -> Checkpoint:
    """Read and verify a checkpoint; raises CheckpointError with a clear message."""
    tensor_path, json_path = paths(base)
    for path in (json_path, tensor_path):
        if not path.is_file():
            raise CheckpointError(f"weights file not found: {path}")
    try:
        meta = json.loads(json_path.read_text())
        model_config = ModelConfig.from_dict(meta["model"])
        tokenizer_config = TokenizerConfig.from_dict(meta["tokenizer"])
        expected = meta["sha256"]
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"weights description {json_path} is unreadable: {error}") from None
    if sha256(tensor_path) != expected:
        raise CheckpointError(f"weights file {tensor_path} is corrupt (checksum mismatch)")
    try:
        tensors = load_file(str(tensor_path))
    except Exception as error:  # safetensors raises its own error types
        raise CheckpointError(f"weights file {tensor_path} is unreadable: {error}") from None
    info = {k: v for k, v in meta.items() if k not in ("model", "tokenizer", "sha256", "format")}
    return Checkpoint(model_config, tokenizer_config, tensors, info)

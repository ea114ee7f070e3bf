"""midigen.checkpoint: save/load, integrity checks, and the shipped weights."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from helpers import SHIPPED_WEIGHTS, random_checkpoint

from midigen import checkpoint
from midigen.checkpoint import Checkpoint, CheckpointError
from midigen.generate import GenerationRequest
from midigen.model import MidiGRU, ModelConfig
from midigen.tokenizer import TokenizerConfig, Vocabulary


@pytest.fixture
def saved(tmp_path, random_model):
    """A fresh copy of the random checkpoint (tests below damage it)."""
    base = tmp_path / "nested" / "model"
    checkpoint.save(random_model[1], base)
    return base


def test_save_load_round_trip(tmp_path, random_model):
    model, original = random_model
    original = Checkpoint(original.model_config, original.tokenizer_config, original.tensors,
                          {"validation": {"nll_per_note": 1.25}, "training": {"epochs": 3, "data": {"files": 2}}})
    json_path = checkpoint.save(original, tmp_path / "sub" / "ck")
    assert json_path == tmp_path / "sub" / "ck.json"
    assert (tmp_path / "sub" / "ck.safetensors").is_file()
    assert not list((tmp_path / "sub").glob("*.tmp"))
    for base in (tmp_path / "sub" / "ck", tmp_path / "sub" / "ck.json", str(tmp_path / "sub" / "ck.safetensors")):
        loaded = checkpoint.load(base)
        assert loaded.model_config == original.model_config
        assert loaded.tokenizer_config == original.tokenizer_config
        assert loaded.info == original.info
        assert loaded.tensors.keys() == original.tensors.keys()
        for name, array in original.tensors.items():
            assert loaded.tensors[name].dtype == np.float32
            np.testing.assert_array_equal(loaded.tensors[name], array)
    # the loaded tensors rebuild the same network
    rebuilt = MidiGRU.from_checkpoint(loaded)
    tokens = torch.tensor([[1, 5, 100, 200, 3, 150, 250]])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(tokens)[0], model(tokens)[0], rtol=0, atol=0)


def test_model_from_checkpoint_is_ready_to_evaluate():
    _, ck = random_checkpoint(random_seed=4)
    ck.model_config = ModelConfig(**{**ck.model_config.to_dict(), "dropout": 0.5})
    model = MidiGRU.from_checkpoint(ck)
    tokens = torch.tensor([[1, 5, 100, 200, 3, 150, 250]])
    with torch.no_grad():
        torch.testing.assert_close(model(tokens)[0], model(tokens)[0], rtol=0, atol=0)  # no dropout
    assert model.head.weight.detach().numpy().tolist() == ck.tensors["head.weight"].tolist()


def test_json_records_configs_and_checksum(saved):
    meta = json.loads(saved.with_suffix(".json").read_text())
    assert meta["format"] == "midigen-checkpoint-1"
    assert ModelConfig.from_dict(meta["model"]) == checkpoint.load(saved).model_config
    assert TokenizerConfig.from_dict(meta["tokenizer"]) == TokenizerConfig()
    assert meta["sha256"] == checkpoint.sha256(saved.with_suffix(".safetensors"))
    assert len(meta["sha256"]) == 64


def test_flipped_byte_fails_the_checksum(saved):
    tensor_path = saved.with_suffix(".safetensors")
    data = bytearray(tensor_path.read_bytes())
    data[len(data) - 10] ^= 0x01  # inside the last tensor's data: the file still parses
    tensor_path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        checkpoint.load(saved)


def test_truncated_tensor_file_fails_the_checksum(saved):
    tensor_path = saved.with_suffix(".safetensors")
    tensor_path.write_bytes(tensor_path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="checksum"):
        checkpoint.load(saved)


def test_unparseable_tensor_file_with_matching_checksum(saved):
    tensor_path, json_path = checkpoint.paths(saved)
    tensor_path.write_bytes(b"not a safetensors file at all")
    meta = json.loads(json_path.read_text())
    meta["sha256"] = checkpoint.sha256(tensor_path)
    json_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unreadable"):
        checkpoint.load(saved)


@pytest.mark.parametrize("missing", [".json", ".safetensors"])
def test_missing_file(saved, missing):
    saved.with_suffix(missing).unlink()
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load(saved)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load(tmp_path / "nothing")
    (tmp_path / "dir.json").mkdir()
    (tmp_path / "dir.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError):
        checkpoint.load(tmp_path / "dir")


@pytest.mark.parametrize("content", [
    b"{not json", b"", b"[]", b"null", b"42", b'"text"', b"\xff\xfe\x00garbage",
    b'{"model": {}}', b'{"model": {"vocab_size": 275}, "tokenizer": {}}',
    b'{"model": {"vocab_size": 275, "colour": 1}, "tokenizer": {}, "sha256": "00"}',
    b'{"model": {"vocab_size": 275}, "tokenizer": {"pitch_min": 90, "pitch_max": 20}, "sha256": "00"}',
])
def test_garbage_json(saved, content):
    saved.with_suffix(".json").write_bytes(content)
    with pytest.raises(CheckpointError):
        checkpoint.load(saved)


def test_loading_errors_are_runtime_errors(saved):
    # the CLI turns RuntimeError into a one-line message: CheckpointError must be one
    saved.with_suffix(".json").write_text("{")
    with pytest.raises(RuntimeError, match=str(saved.name)):
        checkpoint.load(saved)


# -- the shipped weights ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return checkpoint.load(SHIPPED_WEIGHTS)


def test_default_weights_are_the_shipped_model(shipped):
    default = checkpoint.load()
    assert default.info == shipped.info
    np.testing.assert_array_equal(default.tensors["head.weight"], shipped.tensors["head.weight"])


def test_shipped_weights_match_their_config(shipped):
    config = shipped.model_config
    assert config.vocab_size == len(Vocabulary(shipped.tokenizer_config))
    expected = {k: tuple(v.shape) for k, v in MidiGRU(config).state_dict().items()}
    assert {k: tuple(v.shape) for k, v in shipped.tensors.items()} == expected
    for name, array in shipped.tensors.items():
        assert array.dtype == np.float32
        assert np.isfinite(array).all(), name
        assert np.abs(array).max() > 0, name


def test_shipped_weights_describe_training_and_validation(shipped):
    training = shipped.info["training"]
    data = training["data"]
    assert data["files"] == data["train_files"] + len(data["validation_files"])
    assert data["train_files"] > 0 and data["validation_files"]
    assert data["train_notes"] > 0 and data["train_tokens"] > data["train_notes"]
    assert len(data["files_sha256"]) == 64
    assert training["history"] and all(math.isfinite(h["valid_loss"]) for h in training["history"])
    validation = shipped.info["validation"]
    assert math.isfinite(validation["nll_per_note"]) and validation["nll_per_note"] > 0
    assert math.isfinite(validation["nll_per_token"]) and validation["nll_per_token"] > 0
    # the recorded figure is the best epoch of the recorded history
    assert validation["nll_per_token"] == pytest.approx(min(h["valid_loss"] for h in training["history"]), abs=1e-4)
    # ...and beats a uniform guess over the vocabulary by a wide margin
    assert validation["nll_per_token"] < 0.6 * math.log(shipped.model_config.vocab_size)


def test_shipped_weights_generate_notes(shipped_generator):
    (result,) = shipped_generator.generate(GenerationRequest(notes=30, seconds=None, random_seed=1))
    assert len(result.continuation.notes) == 30
    assert result.midi.get_end_time() > 0


def test_copied_checkpoint_loads_anywhere(tmp_path, saved):
    for suffix in (".json", ".safetensors"):
        shutil.copy(saved.with_suffix(suffix), tmp_path / f"copy{suffix}")
    assert checkpoint.load(tmp_path / "copy").model_config == checkpoint.load(saved).model_config


def test_other_sizes_round_trip(tmp_path):
    _, ck = random_checkpoint(random_seed=3, hidden=8, layers=3, embedding=4,
                              config=TokenizerConfig(steps_per_beat=4, max_shift=8, max_duration=16))
    checkpoint.save(ck, tmp_path / "small")
    loaded = checkpoint.load(tmp_path / "small")
    assert loaded.tokenizer_config == ck.tokenizer_config
    assert loaded.model_config.num_layers == 3
    assert sorted(loaded.tensors) == sorted(ck.tensors)

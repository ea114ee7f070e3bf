"""midigen.distributed: real two-process gloo runs started by torchrun, and the helpers' arithmetic."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import distributed_step
import pytest
import torch
from helpers import ROOT, run_cli, write_scales
from safetensors.torch import load_file

from midigen import checkpoint
from midigen.distributed import Ranks, rank_batch_size, shard, training_shard
from midigen.generate import GenerationRequest, Generator
from midigen.model import MidiGRU
from midigen.prepare import TokenCache
from midigen.train import state_paths

TIMEOUT = 420  # seconds: two processes start torch on a busy 2-core machine


def torchrun(processes: int, *args: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=PROCESSES ARGS`` (a free port each time), one thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)


TRAIN = ("--batch-size", "8", "--sequence-length", "32", "--learning-rate", "0.01", "--hidden-size", "32",
         "--num-layers", "1", "--embedding-size", "16", "--dropout", "0", "--transpose", "2",
         "--validation-share", "0.25", "--seed", "3", "--device", "cpu")


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    scales = write_scales(folder / "scales", 8)
    out = folder / "model"
    result = torchrun(2, "-m", "midigen", "train", "--data", str(scales), "--out", str(out), "--epochs", "4", *TRAIN)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result


@pytest.mark.slow
def test_two_processes_train_a_model_that_loads_and_generates(two_process_run):
    out, result = two_process_run
    meta = checkpoint.load(out).info
    history = meta["training"]["history"]
    assert len(history) == 4
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["valid_loss"] < history[0]["valid_loss"]
    (piece,) = Generator(out, "cpu").generate(GenerationRequest(notes=40, seconds=None, random_seed=5))
    assert len(piece.continuation.notes) == 40


@pytest.mark.slow
def test_only_rank_zero_logs_and_validation_covers_every_held_out_file(two_process_run):
    out, result = two_process_run
    logged = result.stdout + result.stderr
    assert logged.count("epoch 1: train loss") == 1 and logged.count("2 process(es)") == 1
    meta = checkpoint.load(out).info
    held_out = set(meta["training"]["data"]["validation_files"])
    assert len(held_out) == 2  # one per rank: the figures must add both shards up
    pieces = {name: tokens for name, tokens, *_ in TokenCache(out.with_name("model.tokens")).pieces()}
    assert meta["validation"]["tokens"] == sum(len(pieces[name]) - 1 for name in held_out)


@pytest.mark.slow
def test_resume_with_another_number_of_processes(two_process_run, tmp_path):
    out, _ = two_process_run
    copy = tmp_path / "model"
    for source in (*checkpoint.paths(out), *state_paths(out)):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    before = json.loads(state_paths(copy)[1].read_text())
    cache = out.with_name("model.tokens")
    result = run_cli("train", "--data", str(cache), "--out", str(copy), "--epochs", "5", "--resume", *TRAIN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming after epoch 4" in result.stdout + result.stderr
    after = json.loads(state_paths(copy)[1].read_text())
    assert after["epoch"] == 5 and after["history"][:4] == before["history"]


@pytest.mark.slow
def test_one_step_on_two_processes_equals_one_step_on_one(tmp_path):
    distributed_step.main(str(tmp_path / "one.safetensors"))  # one plain process, not started by torchrun
    result = torchrun(2, str(ROOT / "tests" / "distributed_step.py"), str(tmp_path / "two.safetensors"))
    assert result.returncode == 0, result.stderr[-3000:]
    weights = {count: load_file(str(tmp_path / f"{name}.safetensors")) for count, name in ((1, "one"), (2, "two"))}
    torch.manual_seed(0)
    initial = MidiGRU(distributed_step.MODEL).state_dict()
    assert weights[1].keys() == weights[2].keys() == initial.keys()
    assert all(not torch.equal(initial[name], value) for name, value in weights[1].items())  # the step moved them
    for name, value in weights[1].items():
        torch.testing.assert_close(weights[2][name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_batches_and_files_are_shared_evenly_or_refused():
    two = [Ranks(0, 2), Ranks(1, 2)]
    assert [shard(list(range(5)), r) for r in two] == [[0, 2, 4], [1, 3]]
    assert shard([1, 2], Ranks()) == [1, 2]
    assert [rank_batch_size(32, r) for r in two] == [16, 16] and rank_batch_size(7, Ranks()) == 7
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        rank_batch_size(7, Ranks(0, 2))
    with pytest.raises(ValueError, match="1 training files cannot be shared by 2 processes"):
        training_shard(["only"], Ranks(1, 2))

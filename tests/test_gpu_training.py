"""Training on CUDA: bf16 autocast, fused AdamW, resume, torchrun with NCCL. Skipped without a GPU
(run by benchmarks/gpu_check.sh on a GPU machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, write_scales

from midigen import checkpoint, gpu_training
from midigen.model import MidiGRU, ModelConfig
from midigen.train import TrainConfig, state_paths, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TINY_MODEL = {"hidden_size": 64, "num_layers": 2, "embedding_size": 32, "dropout": 0.0}


def tiny_config(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=8, sequence_length=32, learning_rate=1e-2, validation_share=0.2,
                       transpose=2, seed=3)


def test_bf16_forward_gives_float32_logits_close_to_float32():
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = MidiGRU(ModelConfig(vocab_size=275, embedding_size=32, hidden_size=64, num_layers=2, dropout=0.0))
    model = model.to(device).eval()
    tokens = torch.randint(3, 275, (4, 64), device=device)
    with torch.no_grad():
        exact, _ = model(tokens)
        fast, _ = gpu_training.for_training(model, device)(tokens)
    assert gpu_training.bf16_usable(device) and fast.dtype == torch.float32
    assert (fast - exact).abs().max() < 0.1


def test_cuda_training_with_fused_adamw_learns_and_resumes(tmp_path):
    scales = write_scales(tmp_path / "scales", 6)
    out = tmp_path / "cuda"
    meta = train(scales, out, tiny_config(3), TINY_MODEL, device="cuda")
    history = meta["training"]["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(v.dtype.name == "float32" for v in checkpoint.load(out).tensors.values())
    train(scales, out, tiny_config(4), TINY_MODEL, device="cuda", resume=True)  # fused AdamW's steps on the GPU
    assert json.loads(state_paths(out)[1].read_text())["epoch"] == 4


def test_torchrun_trains_on_every_gpu_with_nccl(tmp_path):
    processes = min(torch.cuda.device_count(), 2)
    scales = write_scales(tmp_path / "scales", 6)
    out = tmp_path / "nccl"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "midigen", "train", "--data", str(scales), "--out", str(out), "--epochs", "2",
               "--batch-size", "8", "--sequence-length", "32", "--hidden-size", "32", "--num-layers", "1",
               "--embedding-size", "16", "--device", "cuda"]
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"device cuda:0, {processes} process(es)" in result.stdout + result.stderr
    assert len(checkpoint.load(out).info["training"]["history"]) == 2

"""The app as Hugging Face hosts it: the `spaces` package installed, and no GPU (a CPU Space), or the
ZeroGPU flag set where ZeroGPU cannot work, or a GPU asked for that is not there."""

from __future__ import annotations

import importlib.util
import subprocess

import pytest
from app_server import PYTHON, REPO, running_app
from app_testkit import call_generate
from gradio_client import Client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def composes(server, tmp_path) -> dict:
    client = Client(server.url, verbose=False, ssl_verify=False, download_files=str(tmp_path))
    try:
        result = call_generate(client, seconds=3, random_seed=4)
    finally:
        client.close()
    assert result["audio_1"] and result["midi_files"], result
    return result


def test_cpu_space_with_spaces_installed_samples_on_the_cpu(midigen_app, app_client):
    """The session's app runs as on a free CPU Space: `spaces` importable, no GPU, no ZeroGPU flag."""
    assert importlib.util.find_spec("spaces") is not None, "tests must run with the `spaces` package installed"
    result = call_generate(app_client, seconds=3, random_seed=4)
    assert result["audio_1"] and result["midi_files"], result
    assert "sampling on the CPU (compiled)" in midigen_app.log(last=100_000)


def test_zero_gpu_flag_where_zero_gpu_cannot_start_falls_back_to_the_cpu(tmp_path):
    """Off Hugging Face's machines the pinned `spaces` refuses ZeroGPU mode at import (no device API, or a
    CPU-only torch): the app says so in its log and still composes on the CPU."""
    env = {"SPACES_ZERO_GPU": "true", "SPACES_ZERO_DEVICE_API_URL": "http://127.0.0.1:9"}
    with running_app(tmp_path / "server", env) as server:
        result = composes(server, tmp_path / "downloads")
        log = server.log(last=100_000)
    assert "ZeroGPU is set but cannot be used here" in log, log[-2000:]
    assert "new notes" in result["summary"]


def test_asking_for_a_missing_gpu_stops_the_app_with_one_line(tmp_path):
    env = {"MIDIGEN_DEVICE": "cuda", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    done = subprocess.run([str(PYTHON), "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "midigen: cannot start: device cuda was asked for but no CUDA GPU is available"), done.stderr[-2000:]
    assert "Traceback" not in done.stderr

"""Where computation runs: the compiled CPU sampler, a CUDA GPU, or a GPU lent by Hugging Face's ZeroGPU.

``resolve_device`` answers for the command line and training (``auto``, ``cpu``, ``cuda``);
``sampling_placement`` answers for the web app, which may also run on ZeroGPU;
``ZeroGpuSampler`` samples inside ``spaces.GPU`` and falls back to the CPU when that call fails.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path

LOG = logging.getLogger("midigen.device")
DEVICES = ("auto", "cpu", "cuda")
GPU_DRIVER_PATHS = ("/proc/driver/nvidia", "/dev/nvidiactl")
# ZeroGPU's flag, read as the pinned `spaces` package reads it (spaces/config.py: `boolean`).
ZERO_GPU_FLAG = "SPACES_ZERO_GPU"
ZERO_GPU_TRUE = ("1", "t", "true")
# GPU seconds asked of ZeroGPU: start-up plus a share per second of music per variation (a generous
# estimate: the CUDA sampler writes a second of music in a few milliseconds once started).
GPU_BASE_SECONDS = 5.0
GPU_SECONDS_PER_MUSIC_SECOND = 0.1
GPU_MAX_SECONDS = 60
FALLBACK_NOTICE = "The GPU was busy or unavailable, so this piece was composed on the CPU."


def usable_cores() -> int:
    """CPUs this process may run on (a container may see more in ``os.cpu_count()``)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cuda_usable() -> bool:
    """True when a CUDA GPU can be used; torch is imported only when a GPU driver is present."""
    if not any(Path(p).exists() for p in GPU_DRIVER_PATHS):
        return False
    import torch

    return torch.cuda.is_available()


def resolve_device(name: str, cuda: Callable[[], bool] = cuda_usable) -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; 'cuda' without a GPU is an error."""
    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {name!r}")
    if name == "cpu":
        return "cpu"
    if cuda():
        return "cuda"
    if name == "cuda":
        raise RuntimeError("device cuda was asked for but no CUDA GPU is available")
    return "cpu"


def zero_gpu_space(env: Mapping[str, str] = os.environ) -> bool:
    """True on a Hugging Face ZeroGPU Space, which sets ``SPACES_ZERO_GPU``."""
    return env.get(ZERO_GPU_FLAG, "").lower() in ZERO_GPU_TRUE


def sampling_placement(env: Mapping[str, str] = os.environ, cuda: Callable[[], bool] = cuda_usable) -> str:
    """Where the app samples: 'zerogpu', 'cuda' or 'cpu'.

    ``MIDIGEN_DEVICE`` (auto, cpu, cuda; default auto) overrides the choice. With auto: ZeroGPU when
    Hugging Face says so, a GPU when CUDA is usable at start, else the compiled CPU sampler, whether
    or not the ``spaces`` package is installed.
    """
    wanted = env.get("MIDIGEN_DEVICE", "").strip().lower() or "auto"
    if wanted not in DEVICES:
        raise ValueError(f"MIDIGEN_DEVICE must be one of {', '.join(DEVICES)}, not {wanted!r}")
    if wanted == "cpu":
        return "cpu"
    if zero_gpu_space(env):  # ZeroGPU lends its GPU only inside spaces.GPU calls, so CUDA is not usable at start
        return "zerogpu"
    return resolve_device(wanted, cuda)


def gpu_seconds(request, seed=None) -> int:
    """ZeroGPU time to ask for ``request``: it grows with its length times its variations."""
    music_seconds = request.seconds if request.seconds is not None else request.notes / 4
    wanted = GPU_BASE_SECONDS + GPU_SECONDS_PER_MUSIC_SECOND * music_seconds * request.variations
    return min(GPU_MAX_SECONDS, math.ceil(wanted))


class ZeroGpuSampler:
    """``sample(request, seed) -> (pieces, notices)`` on a ZeroGPU GPU, or on the CPU when the GPU call fails.

    ``gpu_decorator`` is ``spaces.GPU``; ZeroGPU refuses a call when an anonymous user is over quota or no GPU
    is free, and the user then still gets music, composed by ``cpu_generate``, with a one-line notice.
    """

    def __init__(self, cpu_generate: Callable, gpu_generate: Callable, gpu_decorator: Callable):
        self.cpu_generate = cpu_generate
        self.on_gpu = gpu_decorator(duration=gpu_seconds)(gpu_generate)

    def __call__(self, request, seed=None) -> tuple[list, list[str]]:
        try:
            return self.on_gpu(request, seed), []
        except Exception as error:  # ZeroGPU raises gradio errors, timeouts and CUDA errors alike
            LOG.warning("ZeroGPU call failed, composing on the CPU instead: %s", error)
            return self.cpu_generate(request, seed), [FALLBACK_NOTICE]

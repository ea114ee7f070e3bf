"""Where sampling runs: one decision per kind of machine, and ZeroGPU's fallback to the CPU."""

from __future__ import annotations

import pytest
import spaces
import spaces.config

from midigen.device import (
    FALLBACK_NOTICE,
    GPU_MAX_SECONDS,
    ZeroGpuSampler,
    gpu_seconds,
    resolve_device,
    sampling_placement,
    zero_gpu_space,
)
from midigen.generate import GenerationRequest


def no_gpu() -> bool:
    return False


def gpu() -> bool:
    return True


@pytest.mark.parametrize(("env", "cuda", "expected"), [
    ({}, no_gpu, "cpu"),  # a CPU Space, with or without `spaces` installed
    ({}, gpu, "cuda"),  # a dedicated GPU
    ({"SPACES_ZERO_GPU": "true"}, no_gpu, "zerogpu"),  # ZeroGPU: no GPU at start, one per call
    ({"SPACES_ZERO_GPU": "1"}, no_gpu, "zerogpu"),
    ({"SPACES_ZERO_GPU": "false"}, no_gpu, "cpu"),
    ({"SPACES_ZERO_GPU": ""}, gpu, "cuda"),
    ({"MIDIGEN_DEVICE": "cpu"}, gpu, "cpu"),
    ({"MIDIGEN_DEVICE": "cpu", "SPACES_ZERO_GPU": "true"}, no_gpu, "cpu"),
    ({"MIDIGEN_DEVICE": "auto", "SPACES_ZERO_GPU": "true"}, no_gpu, "zerogpu"),
    ({"MIDIGEN_DEVICE": "CUDA"}, gpu, "cuda"),
    ({"MIDIGEN_DEVICE": "cuda", "SPACES_ZERO_GPU": "true"}, no_gpu, "zerogpu"),
])
def test_sampling_placement(env, cuda, expected):
    assert sampling_placement(env, cuda) == expected


def test_cuda_asked_for_without_a_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no CUDA GPU is available"):
        sampling_placement({"MIDIGEN_DEVICE": "cuda"}, no_gpu)
    with pytest.raises(ValueError, match="MIDIGEN_DEVICE must be one of auto, cpu, cuda"):
        sampling_placement({"MIDIGEN_DEVICE": "tpu"}, gpu)


@pytest.mark.parametrize("value", ["1", "t", "true", "True", "TRUE", "0", "f", "false", "yes", "", "on"])
def test_zero_gpu_flag_is_read_as_the_spaces_package_reads_it(value):
    assert zero_gpu_space({"SPACES_ZERO_GPU": value}) == spaces.config.boolean(value)


def test_resolve_device():
    assert resolve_device("cpu", gpu) == "cpu"
    assert resolve_device("auto", gpu) == "cuda" and resolve_device("auto", no_gpu) == "cpu"
    with pytest.raises(RuntimeError):
        resolve_device("cuda", no_gpu)
    with pytest.raises(ValueError):
        resolve_device("gpu", gpu)


def test_gpu_time_grows_with_length_times_variations():
    short = gpu_seconds(GenerationRequest(seconds=5.0, variations=1))
    long = gpu_seconds(GenerationRequest(seconds=60.0, variations=1))
    many = gpu_seconds(GenerationRequest(seconds=60.0, variations=4))
    assert short < long < many <= GPU_MAX_SECONDS
    assert gpu_seconds(GenerationRequest(notes=100, seconds=None)) > short


def test_outside_zero_gpu_spaces_gpu_leaves_the_function_as_it_is():
    """What the pinned `spaces` does on a CPU or dedicated-GPU Space: the decorator changes nothing."""

    def compose():
        return "composed"

    assert spaces.GPU(duration=10)(compose) is compose


class Recorder:
    """Stands where Hugging Face's ZeroGPU scheduler would be: records the time asked, then runs the call
    through the real `spaces.GPU` (off ZeroGPU, a plain call); ``refuse`` raises as ZeroGPU does when over quota."""

    def __init__(self, refuse: bool = False):
        self.asked, self.refuse = [], refuse

    def __call__(self, duration):
        def decorate(task):
            def call(request, seed):
                self.asked.append(duration(request, seed))
                if self.refuse:
                    raise RuntimeError("You have exceeded your GPU quota (60s requested vs. 0s left).")
                return spaces.GPU(duration=duration)(task)(request, seed)

            return call

        return decorate


def test_zero_gpu_sampler_takes_the_gpu_path(shipped_generator):
    recorder = Recorder()
    on_gpu = []
    sampler = ZeroGpuSampler(shipped_generator.generate,
                             lambda r, s: on_gpu.append(r) or shipped_generator.generate(r, s), recorder)
    request = GenerationRequest(notes=20, seconds=None, random_seed=3, variations=2)
    pieces, notices = sampler(request)
    assert notices == [] and on_gpu == [request] and len(pieces) == 2
    assert recorder.asked == [gpu_seconds(request)]


def test_zero_gpu_sampler_falls_back_to_the_cpu_with_a_notice(shipped_generator):
    recorder = Recorder(refuse=True)
    sampler = ZeroGpuSampler(shipped_generator.generate, shipped_generator.generate, recorder)
    request = GenerationRequest(notes=20, seconds=None, random_seed=3)
    pieces, notices = sampler(request)
    assert notices == [FALLBACK_NOTICE]
    assert [p.tokens for p in pieces] == [p.tokens for p in shipped_generator.generate(request)]

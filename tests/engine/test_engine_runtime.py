"""Runtime resolution: device, precision, threads, seeds, determinism, description."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from ekdcli.engine import runtime as runtime_module
from ekdcli.engine.options import EngineOptions
from ekdcli.engine.runtime import Runtime, physical_cores
from ekdcli.util.errors import UsageError


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no CUDA GPU is visible; use --device cpu"):
        Runtime(EngineOptions(device="cuda"))
    assert Runtime(EngineOptions(device="auto")).device.type == "cpu"


def test_fp16_on_cpu_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="fp16 training needs a CUDA GPU"):
        Runtime(EngineOptions(device="cpu", precision="fp16"))


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_cpu_follows_native_bf16(monkeypatch, native: bool, expected: str) -> None:  # noqa: ANN001
    monkeypatch.setattr(runtime_module, "cpu_supports_bf16", lambda: native)
    runtime = Runtime(EngineOptions(device="cpu"))
    assert runtime.precision == expected and runtime.scaler is None
    assert Runtime(EngineOptions(device="cpu", precision="fp32")).precision == "fp32"


def test_cpu_bf16_detection_reads_the_flags(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(
        runtime_module, "_cpuinfo", lambda: "processor\t: 0\nflags\t\t: sse avx512_bf16 fma\n"
    )
    assert runtime_module.cpu_supports_bf16()


def test_autocast_dtype_follows_precision() -> None:
    x = torch.randn(4, 4)
    with Runtime(EngineOptions(device="cpu", precision="bf16")).autocast():
        assert (x @ x).dtype == torch.bfloat16
    with Runtime(EngineOptions(device="cpu", precision="fp32")).autocast():
        assert (x @ x).dtype == torch.float32


def test_physical_cores_ignores_hyperthreads(monkeypatch) -> None:  # noqa: ANN001
    fake = "".join(f"processor\t: {i}\nphysical id\t: 0\ncore id\t\t: {i // 2}\n\n" for i in range(8))
    monkeypatch.setattr(runtime_module, "_cpuinfo", lambda: fake)
    assert physical_cores() == max(1, len(os.sched_getaffinity(0)) // 2)
    monkeypatch.setattr(runtime_module, "_cpuinfo", lambda: "")
    assert physical_cores() == len(os.sched_getaffinity(0))


def test_threads_and_seeds_are_set() -> None:
    runtime = Runtime(EngineOptions(device="cpu", seed=123))
    assert torch.get_num_threads() == runtime.num_threads >= 1
    drawn = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    assert (
        torch.equal(drawn[0], torch.rand(3)) and drawn[1] == random.random() and drawn[2] == np.random.rand()
    )


def test_deterministic_mode() -> None:
    try:
        Runtime(EngineOptions(device="cpu", deterministic=True))
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def test_describe_records_versions() -> None:
    info = Runtime(EngineOptions(device="cpu", precision="fp32", seed=4)).describe()
    assert info["device"] == "cpu" and info["precision"] == "fp32" and info["seed"] == 4
    assert info["versions"]["torch"] == torch.__version__ and info["versions"]["ekd"]
    assert info["world_size"] == 1 and isinstance(info["device_name"], str)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"precision": "fp8"}, "precision must be one of auto, fp32, bf16, fp16"),
        ({"device": "tpu"}, "device must be auto, cpu, cuda or cuda:N"),
        ({"limit_train": 0}, "--limit-train must be at least 1"),
        ({"progress": "fancy"}, "progress must be one of"),
    ],
)
def test_bad_options_are_usage_errors(changes: dict, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        EngineOptions(**changes).validate()

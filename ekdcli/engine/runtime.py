"""The resolved execution environment: device, precision, threads, seeds, process group."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import sys
from collections.abc import Iterator
from functools import cache
from typing import Any

import numpy as np
import torch

from ekdcli.engine import ddp
from ekdcli.engine.options import EngineOptions
from ekdcli.util.errors import UsageError


@cache
def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return ""


def cpu_flags() -> set[str]:
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_supports_bf16() -> bool:
    """Native bf16 arithmetic on this CPU (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    if cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        return True
    probe = getattr(getattr(torch._C, "_cpu", None), "_is_avx512_bf16_supported", None)
    return bool(probe()) if probe is not None else False


def physical_cores() -> int:
    """Distinct (socket, core) pairs this process may run on; hyper-threads do not speed up GEMMs."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores: set[tuple[str, str]] = set()
    siblings = 0
    physical_id = core_id = ""
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "physical id":
            physical_id = value
        elif key == "core id":
            core_id = value
            cores.add((physical_id, core_id))
        elif key == "processor":
            siblings += 1
    if not cores or not siblings:
        return max(1, logical)
    threads_per_core = max(1, siblings // len(cores))
    return max(1, logical // threads_per_core)


def _env_threads() -> int | None:
    """``EKD_NUM_THREADS`` as a positive integer, else None (unset or not a number: ignored)."""
    text = os.environ.get("EKD_NUM_THREADS", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def cpu_name() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices): call before building a model to fix its init."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Runtime:
    """Options resolved against the machine; built once per job and shared by its parts."""

    def __init__(self, options: EngineOptions | None = None) -> None:
        self.options = (options or EngineOptions()).validate()
        ddp.init_from_env(backend="gloo" if self.options.device == "cpu" else None)
        self.rank = ddp.rank()
        self.world_size = ddp.world_size()
        self.device = self._resolve_device(self.options.device)
        self.precision = self._resolve_precision(self.options.precision)
        self.channels_last = bool(self.options.channels_last)
        self.num_threads = self._set_threads()
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self._set_determinism(self.options.deterministic)
        seed_everything(self.options.seed)

    # ------------------------------------------------------------------ resolution
    def _resolve_device(self, name: str) -> torch.device:
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        if name.startswith("cuda"):
            if not torch.cuda.is_available():
                raise UsageError(
                    f"--device {name} was asked for but no CUDA GPU is visible; use --device cpu."
                )
            if name == "cuda":
                index = ddp.local_rank() % torch.cuda.device_count() if self.world_size > 1 else 0
                name = f"cuda:{index}"
            device = torch.device(name)
            if device.index is not None and device.index >= torch.cuda.device_count():
                raise UsageError(
                    f"--device {name} does not exist; this machine has {torch.cuda.device_count()} GPUs."
                )
            torch.cuda.set_device(device)
            return device
        return torch.device("cpu")

    def _resolve_precision(self, name: str) -> str:
        cuda = self.device.type == "cuda"
        if name == "auto":
            if cuda:
                return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            return "bf16" if cpu_supports_bf16() else "fp32"
        if name == "fp16" and not cuda:
            raise UsageError("fp16 training needs a CUDA GPU; use --precision bf16 or fp32 on the CPU.")
        return name

    def _set_threads(self) -> int:
        if self.device.type != "cpu":
            return torch.get_num_threads()
        # EKD_NUM_THREADS: a campaign worker's share of the CPU (ekd sweep sets it), else all cores
        threads = _env_threads() or max(1, physical_cores() // max(1, ddp.local_world_size()))
        torch.set_num_threads(threads)
        return threads

    def _set_determinism(self, deterministic: bool) -> None:
        if deterministic:
            # cuBLAS needs a fixed workspace to be reproducible; must be set before its first use.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = not deterministic and self.device.type == "cuda"

    # ------------------------------------------------------------------ use
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Mixed precision for forward passes; a no-op at fp32."""
        dtype = self.autocast_dtype
        if dtype is None:
            yield
            return
        with torch.autocast(self.device.type, dtype=dtype):
            yield

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(self.device, non_blocking=True)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move to the device (channels-last when enabled); the same module is returned."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def generator(self, seed: int, device: torch.device | str | None = None) -> torch.Generator:
        gen = torch.Generator(device=device or self.device)
        gen.manual_seed(seed)
        return gen

    def describe(self) -> dict[str, Any]:
        """What a run was made with: device, precision, parallelism and library versions."""
        import ekdcli

        try:
            import torchvision

            tv = torchvision.__version__
        except ImportError:
            tv = None
        cuda = self.device.type == "cuda"
        return {
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if cuda else cpu_name(),
            "precision": self.precision,
            "channels_last": self.channels_last,
            "compile": bool(self.options.compile),
            "deterministic": bool(self.options.deterministic),
            "seed": int(self.options.seed),
            "world_size": self.world_size,
            "num_threads": self.num_threads,
            "versions": {
                "ekd": ekdcli.__version__,
                "python": sys.version.split()[0],
                "torch": torch.__version__,
                "torchvision": tv,
                "numpy": np.__version__,
                "cuda": torch.version.cuda if cuda else None,
                "cudnn": torch.backends.cudnn.version() if cuda else None,
            },
            "platform": platform.platform(),
        }

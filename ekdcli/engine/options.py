"""How to run (not what to learn): device, precision, seeds, limits, progress display."""

from __future__ import annotations

from dataclasses import dataclass

from ekdcli.util.errors import UsageError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PROGRESS = ("auto", "bar", "lines", "none")


@dataclass
class EngineOptions:
    """Execution options shared by train, score, distill, evaluate and bench."""

    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    seed: int = 0
    deterministic: bool = False
    limit_train: int | None = None
    limit_test: int | None = None
    quiet: bool = False
    progress: str = "auto"
    num_workers: int = 4
    eval_batch_size: int = 256

    def validate(self) -> EngineOptions:
        """Raise UsageError naming the bad option; return self for chaining."""
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}.")
        if self.progress not in PROGRESS:
            raise UsageError(f"progress must be one of {', '.join(PROGRESS)}, got {self.progress!r}.")
        check_device(self.device)
        for name in ("limit_train", "limit_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}.")
        if self.num_workers < 0:
            raise UsageError(f"num_workers must be >= 0, got {self.num_workers}.")
        if self.eval_batch_size < 1:
            raise UsageError(f"eval batch size must be at least 1, got {self.eval_batch_size}.")
        return self


def check_device(device: object) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; anything else is one clear sentence."""
    text = str(device)
    if not (text in ("auto", "cpu", "cuda") or text.startswith("cuda:")):
        raise UsageError(f"device must be auto, cpu, cuda or cuda:N, got {text!r}.")

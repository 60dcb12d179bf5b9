"""ekd: energy-based knowledge distillation for image classifiers.

The Python API (:mod:`ekdcli.api`) is here at the top level, loaded on first use so that
``import ekdcli`` stays as cheap as ``ekd --help`` (no torch until a function runs)::

    import ekdcli as ekd

    run = ekd.distill(teacher="resnet32", student="resnet8", method="energy_kd", epochs=2)
    student = ekd.load_model(run.run_dir)

See docs/python-api.md.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "DistillRun",
    "Evaluation",
    "Export",
    "Partition",
    "Scores",
    "Thresholds",
    "TrainRun",
    "__version__",
    "distill",
    "energy_dkd_loss",
    "energy_kd_loss",
    "energy_score",
    "energy_temperatures",
    "energy_thresholds",
    "evaluate",
    "export",
    "load_model",
    "partition",
    "score",
    "train",
]
# loaded from ekdcli.api when first asked for (type checkers: import them from ekdcli.api)
_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("ekdcli.api"), name)
    raise AttributeError(f"module 'ekdcli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])

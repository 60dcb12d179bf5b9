"""First-party experiment trackers: TensorBoard and MLflow (``--track tensorboard,mlflow``).

Factories are ``"module:attr"`` strings, so ``ekd --help`` and ``ekd list`` import neither
library; a tracker whose package is missing says which extra installs it when it is asked for.
The run directory's own record (``metrics.jsonl``, ``summary.json``, ``run.log``) is written
whatever ``--track`` says: the trackers are copies of it for other tools.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ekdcli.sdk.hookspecs import hookimpl


@hookimpl
def register_trackers(register: Callable[..., Any]) -> None:
    register(
        "tensorboard",
        "ekd_plugins.trackers.tensorboard_tracker:TensorBoardTracker",
        aliases=("tb",),
        description="TensorBoard event files in <run>/tensorboard (torch.utils.tensorboard)",
        info={"extra": "tensorboard", "package": "tensorboard"},
    )
    register(
        "mlflow",
        "ekd_plugins.trackers.mlflow_tracker:MlflowTracker",
        description="an MLflow run: the config as params, metrics per epoch, the best weights as an artifact "
        "(<store>/mlflow.db with artifacts in <store>/mlartifacts unless --tracking-uri)",
        info={"extra": "mlflow", "package": "mlflow"},
    )

"""A Weights & Biases tracker: every ekd event, one call of the wandb API each.

The run lives in ``<run>/wandb/`` (``wandb sync`` uploads an offline one), is named after the
run directory and has an id derived from its path, so ``ekd distill --resume`` continues it.
The project is ``$WANDB_PROJECT``, else ``ekd``; ``WANDB_MODE=offline`` needs no account.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ekdcli.sdk import RunInfo, Tracker, UsageError, numbers


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self) -> None:
        try:
            import wandb
        except ImportError as exc:
            raise UsageError(
                f"tracker 'wandb' needs the wandb package ({exc}); pip install wandb, or drop wandb from --track."
            ) from exc
        self.wandb = wandb
        self.run: Any = None

    def start(self, run: RunInfo) -> None:
        self.run = self.wandb.init(
            project=os.environ.get("WANDB_PROJECT") or "ekd",
            name=run.name,
            id=hashlib.sha256(str(run.run_dir).encode()).hexdigest()[:16],
            resume="allow",
            dir=str(run.run_dir),
            job_type=run.command,
            config=run.config,
            reinit="create_new",
            # no banner, and stdout left alone: ekd's own console (and --json) stay as they are
            settings=self.wandb.Settings(console="off", quiet=True),
        )

    def log_energy(self, groups: dict[str, Any]) -> None:
        self.run.config.update({"energy_groups": groups}, allow_val_change=True)

    def log_epoch(self, record: dict[str, Any]) -> None:
        self.run.log(numbers(record), step=int(record["epoch"]))

    def finish(self, status: str, summary: dict[str, Any] | None, artifacts: dict[str, Path]) -> None:
        if self.run is None:
            return
        if summary is not None:
            self.run.summary.update(
                {f"summary/{key}": value for key, value in numbers(summary, skip=()).items()}
            )
        if "best" in artifacts:
            weights = self.wandb.Artifact(f"{self.run.name}-best", type="model")
            weights.add_file(str(artifacts["best"]))
            self.run.log_artifact(weights)
        self.run.finish(exit_code=0 if status == "finished" else 1)
        self.run = None

"""TensorBoard: event files in ``<run>/tensorboard`` through ``torch.utils.tensorboard``.

Every number of an epoch record is a scalar at step = epoch, nested keys joined by ``/``
(``loss``, ``test_top1``, ``losses/kd``, ``stats/n_T2``; accuracies as fractions, as in
``metrics.jsonl``); the energy groups are scalars under ``energy/`` at step 0; the resolved
configuration, the energy groups and the summary are also text.  ``tensorboard --logdir
ekd-store/runs`` shows every run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ekd_plugins.trackers.common import require
from ekdcli.sdk.contracts import RunInfo, Tracker, numbers

LOG_DIR = "tensorboard"


def _tag(key: str) -> str:
    return key.replace(".", "/")


class TensorBoardTracker(Tracker):
    name = "tensorboard"

    def __init__(self) -> None:
        self._writer_class = require("torch.utils.tensorboard", self.name, "tensorboard").SummaryWriter
        self.writer: Any = None

    def start(self, run: RunInfo) -> None:
        self.writer = self._writer_class(log_dir=str(run.run_dir / LOG_DIR))
        self.writer.add_text("config", _code(run.config_text, "toml"), 0)

    def log_energy(self, groups: dict[str, Any]) -> None:
        for key, value in numbers(groups).items():
            self.writer.add_scalar(f"energy/{_tag(key)}", value, 0)
        self.writer.add_text("energy", _code(json.dumps(groups, indent=2), "json"), 0)
        self.writer.flush()

    def log_epoch(self, record: dict[str, Any]) -> None:
        epoch = int(record["epoch"])
        for key, value in numbers(record).items():
            self.writer.add_scalar(_tag(key), value, epoch)
        self.writer.flush()

    def finish(self, status: str, summary: dict[str, Any] | None, artifacts: dict[str, Path]) -> None:
        if self.writer is None:
            return
        text = json.dumps(summary, indent=2, default=str) if summary is not None else f"the run {status}"
        self.writer.add_text("summary", _code(text, "json"), 0)
        self.writer.close()
        self.writer = None


def _code(text: str, language: str) -> str:
    """Markdown (TensorBoard renders text as Markdown): a fenced block keeps the layout."""
    return f"```{language}\n{text.rstrip()}\n```"

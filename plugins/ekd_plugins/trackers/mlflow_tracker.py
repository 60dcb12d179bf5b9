"""MLflow: one MLflow run per ekd run, through ``MlflowClient`` (no global active run).

* where: ``--tracking-uri`` / ``tracking_uri`` (a server, or any MLflow store URI), else a local
  SQLite store under the store, ``<store>/mlflow.db`` with artifacts in ``<store>/mlartifacts``
  (MLflow keeps its plain-file store only behind an opt-in now; ``mlflow ui --backend-store-uri
  sqlite:///ekd-store/mlflow.db`` shows the runs); the experiment is ``$MLFLOW_EXPERIMENT_NAME``,
  else ``ekd``; the run is named after the run directory, whose ``mlflow.json`` remembers the
  MLflow run so that ``--resume`` continues it;
* params: the resolved configuration, exactly ``config.toml`` (``RunInfo.params``: ``table.key``,
  strings as they are, other values as JSON);
* metrics: every number of every epoch record at step = epoch (``loss``, ``test_top1``,
  ``losses.kd``, ...; accuracies as fractions, as in ``metrics.jsonl``); the energy groups as
  ``energy.*`` at step 0; the summary's numbers as ``summary.*``;
* artifacts: the best weights, config.toml, summary.json, curves.png and run.log.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from ekd_plugins.trackers.common import require
from ekdcli.sdk.contracts import RunInfo, Tracker, numbers

DATABASE = "mlflow.db"
ARTIFACTS = "mlartifacts"
RUN_FILE = "mlflow.json"  # in the run directory: which MLflow run records it
_STATUS = {"finished": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}
_BATCH = 100  # MLflow takes at most 100 params and 1000 metrics per log_batch call


def default_uri(store: Path) -> str:
    return f"sqlite:///{(Path(store) / DATABASE).resolve()}"


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self) -> None:
        self._mlflow = require("mlflow", self.name, "mlflow")
        self.client: Any = None
        self.run_id = ""

    def start(self, run: RunInfo) -> None:
        from mlflow.entities import Param

        uri = run.tracking_uri or default_uri(run.store)
        for name in ("mlflow", "alembic"):  # creating the database logs every migration step at INFO
            logging.getLogger(name).setLevel(logging.WARNING)
        self.client = self._mlflow.tracking.MlflowClient(tracking_uri=uri)
        earlier = _read_json(run.run_dir / RUN_FILE) if run.resumed_after_epoch is not None else {}
        if earlier.get("tracking_uri") == uri and earlier.get("run_id"):
            self.run_id = earlier["run_id"]  # its params are there already (a resume may change epochs)
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment_id = self._experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or "ekd", run, uri)
        created = self.client.create_run(
            experiment_id,
            run_name=run.name,
            tags={"ekd.run_dir": str(run.run_dir), "ekd.command": run.command},
        )
        self.run_id = created.info.run_id
        _write_json(run.run_dir / RUN_FILE, {"tracking_uri": uri, "run_id": self.run_id})
        params = [Param(key, value) for key, value in run.params().items()]
        for first in range(0, len(params), _BATCH):
            self.client.log_batch(self.run_id, params=params[first : first + _BATCH])

    def _experiment(self, name: str, run: RunInfo, uri: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        # a local store keeps its artifacts beside it, not in the working directory
        location = None if run.tracking_uri else (run.store / ARTIFACTS).resolve().as_uri()
        return str(self.client.create_experiment(name, artifact_location=location))

    def _log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(key, value, stamp, step) for key, value in values.items()]
        for first in range(0, len(metrics), _BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[first : first + _BATCH])

    def log_energy(self, groups: dict[str, Any]) -> None:
        self._log({f"energy.{key}": value for key, value in numbers(groups).items()}, 0)

    def log_epoch(self, record: dict[str, Any]) -> None:
        self._log(numbers(record), int(record["epoch"]))

    def finish(self, status: str, summary: dict[str, Any] | None, artifacts: dict[str, Path]) -> None:
        if self.client is None:
            return
        try:
            if summary is not None:
                values = {f"summary.{key}": value for key, value in numbers(summary, skip=()).items()}
                self._log(values, int(summary.get("epochs") or 0))
            for role in ("best", "config", "summary", "curves", "log"):
                if role in artifacts:
                    self.client.log_artifact(self.run_id, str(artifacts[role]))
            self.client.set_terminated(self.run_id, status=_STATUS.get(status, "FINISHED"))
        finally:
            self.client = None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Write-then-rename, so a crash never leaves half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)

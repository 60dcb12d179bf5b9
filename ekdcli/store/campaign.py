"""The campaign directory: what ``ekd sweep`` records and ``ekd sweep --status`` / ``ekd report`` read.

One module owns the format (as :mod:`ekdcli.store.rundir` owns a run's)::

    <store>/campaigns/<name>/
        campaign.json        the definition: configs, seeds, grid, overrides (written once)
        configs/<stem>.toml  each config file as it was when the campaign started (the runs read these)
        state/<run>.json     one per run: pending, running, done or failed (with its one-line error)
        logs/<task>.log      the output of each run and prerequisite, every attempt appended
        report.{md,csv,json,png}   ``ekd report``
        .lock                held by the ``ekd sweep`` that is running the campaign

The runs themselves are ordinary run directories, ``<store>/runs/<name>.<run>``.  Every file is
written atomically; a state file is a record of what the sweep last did, and the run directory
(its ``summary.json``, its checkpoint) stays the truth about how far a run got.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ekdcli.store import locks
from ekdcli.store.atomic import atomic_write_json, atomic_write_text
from ekdcli.store.layout import Store, safe_name
from ekdcli.util.errors import UsageError

DEFINITION = "campaign.json"
STATES = ("pending", "running", "done", "failed")
PREREQUISITES_LOCK = ".prerequisites.lock"  # in <store>/campaigns: one sweep builds teachers/scores at a time


@dataclass(frozen=True)
class CampaignDir:
    """The files of one campaign in a store."""

    store: Store
    name: str

    @property
    def path(self) -> Path:
        return self.store.campaign_dir(self.name)

    @property
    def lock_path(self) -> Path:
        return self.path / ".lock"

    def exists(self) -> bool:
        return (self.path / DEFINITION).is_file()

    def run_dir(self, run: str) -> Path:
        """The run directory of campaign run ``run`` (``<store>/runs/<campaign>.<run>``)."""
        return self.store.run_dir(f"{self.name}.{run}")

    def config_path(self, stem: str) -> Path:
        return self.path / "configs" / f"{safe_name(stem)}.toml"

    def log_path(self, task: str) -> Path:
        return self.path / "logs" / f"{safe_name(task)}.log"

    def report_path(self, suffix: str) -> Path:
        return self.path / f"report.{suffix}"

    # -------------------------------------------------------------- definition
    def read_definition(self) -> dict[str, Any]:
        path = self.path / DEFINITION
        try:
            definition = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(
                f"no campaign {self.name!r} in {self.store.root} ({path} does not exist)."
            ) from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path} is not readable JSON ({exc}); repair or remove it.") from exc
        if not isinstance(definition, dict):
            raise UsageError(f"{path} does not hold a campaign definition; repair or remove it.")
        return definition

    def write_definition(self, definition: dict[str, Any], configs: dict[str, str]) -> None:
        """The config snapshots (stem -> text) first, the definition last: a campaign.json always
        comes with its configs."""
        for stem, text in configs.items():
            atomic_write_text(self.config_path(stem), text)
        atomic_write_json(self.path / DEFINITION, definition)

    # -------------------------------------------------------------- run states
    def _state_path(self, run: str) -> Path:
        return self.path / "state" / f"{safe_name(run)}.json"

    def has_state(self, run: str) -> bool:
        return self._state_path(run).is_file()

    def read_state(self, run: str) -> dict[str, Any]:
        """The run's last recorded state (``pending`` when none was recorded yet)."""
        try:
            record = json.loads(self._state_path(run).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = None
        if not isinstance(record, dict) or record.get("state") not in STATES:
            return {"run": run, "state": "pending", "attempts": 0}
        return record

    def write_state(self, run: str, state: str, **fields: Any) -> dict[str, Any]:
        """Record ``state`` for ``run``, keeping its earlier fields (attempts, times) unless given."""
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}")
        record = {**self.read_state(run), **fields, "run": run, "state": state}
        record["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        if state != "failed":
            record.pop("error", None)
        atomic_write_json(self._state_path(run), record)
        return record

    # -------------------------------------------------------------- lock
    def sweep_pid(self) -> int | None:
        """The PID of the ``ekd sweep`` running this campaign now, else None."""
        return locks.holder(self.lock_path)

    def hold(self) -> locks.FileLock:
        """The lock held by the sweep running this campaign (use it as a context manager); a second
        sweep is refused with one sentence naming the first one's PID."""
        return locks.FileLock(
            self.lock_path,
            f"campaign {self.name!r}",
            hint=f"another ekd sweep runs it: wait for it to end, or watch it with 'ekd sweep --status {self.name}'",
        )


def campaign_names(store: Store) -> list[str]:
    """The campaigns a store holds."""
    root = store.campaigns_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / DEFINITION).is_file())

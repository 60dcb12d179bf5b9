"""A tracker that records every event it gets (for the tracking tests)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ekdcli.sdk.contracts import RunInfo, Tracker


class Recorder(Tracker):
    """Keeps ``(event, payload)`` pairs; ``fail_at`` names an event that raises (every time)."""

    def __init__(self, fail_at: str | None = None) -> None:
        self.events: list[tuple[str, Any]] = []
        self.fail_at = fail_at

    def _got(self, event: str, payload: Any) -> None:
        self.events.append((event, copy.deepcopy(payload)))
        if event == self.fail_at:
            raise ConnectionError(f"the server went away at {event}")

    def start(self, run: RunInfo) -> None:
        self._got("start", run)

    def log_energy(self, groups: dict[str, Any]) -> None:
        self._got("log_energy", groups)

    def log_epoch(self, record: dict[str, Any]) -> None:
        self._got("log_epoch", record)

    def finish(self, status: str, summary: dict[str, Any] | None, artifacts: dict[str, Path]) -> None:
        self._got("finish", (status, summary, artifacts))

    def kinds(self) -> list[str]:
        return [event for event, _ in self.events]

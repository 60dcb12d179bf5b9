"""The trackers of one run: every event goes to each of them, on rank 0 only.

A tracker that cannot start stops the run with one sentence naming it (before any training);
one that fails later is warned about once, dropped, and the run goes on: a tracking server that
goes away must not cost the training it was meant to record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ekdcli.engine.progress import echo
from ekdcli.sdk.contracts import RunInfo, Tracker
from ekdcli.util.errors import EkdError, JobError

STATUSES = ("finished", "stopped", "failed")


class Tracking:
    """Fan-out to ``trackers`` (``(name, tracker)`` pairs; none on ranks other than 0), with what
    the engine cannot know for the run's :class:`RunInfo`: the command, the store, the tracking URI."""

    def __init__(
        self,
        trackers: Sequence[tuple[str, Tracker]] = (),
        command: str = "",
        store: Path | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        self.active: list[tuple[str, Tracker]] = list(trackers)
        self.command, self.store, self.tracking_uri = command, store, tracking_uri
        self.started = False
        self.finished = False
        # What the job sends to log_energy once the objective is set up (the distillation objective's
        # energy groups); the engine calls it without knowing what it holds.
        self.energy_groups: Callable[[], dict[str, Any] | None] | None = None

    def __bool__(self) -> bool:
        return bool(self.active)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.active]

    def start(self, run: RunInfo) -> None:
        """Start every tracker; the first that refuses stops the run (the others are closed)."""
        for position, (name, tracker) in enumerate(self.active):
            try:
                tracker.start(run)
            except Exception as exc:
                self.active = self.active[:position]  # the ones already started get a 'failed' finish
                self.finish("failed", None, {})
                if isinstance(exc, EkdError):
                    raise
                raise JobError(
                    f"tracker {name!r} could not start ({type(exc).__name__}: {_one_line(exc)}); fix its "
                    f"set-up (--tracking-uri, its package) or run without it (drop it from --track)."
                ) from exc
        self.started = True

    def log_energy(self, groups: dict[str, Any]) -> None:
        self._each("log_energy", lambda tracker: tracker.log_energy(groups))

    def log_epoch(self, record: dict[str, Any]) -> None:
        self._each(f"epoch {record.get('epoch')}", lambda tracker: tracker.log_epoch(record))

    def finish(self, status: str, summary: dict[str, Any] | None, artifacts: dict[str, Path]) -> None:
        """Close every tracker once (later calls do nothing)."""
        if self.finished:
            return
        self.finished = True
        self._each("the end of the run", lambda tracker: tracker.finish(status, summary, artifacts))

    def _each(self, event: str, call: Callable[[Tracker], None]) -> None:
        for name, tracker in list(self.active):
            try:
                call(tracker)
            except Exception as exc:  # a tracker must never stop the training it records
                self.active.remove((name, tracker))
                echo(
                    f"warning: tracker {name!r} failed at {event} ({type(exc).__name__}: {_one_line(exc)}); "
                    "training continues without it."
                )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or "no message"

"""What runs will cost, from the speed earlier runs measured: for ``ekd sweep --dry-run``'s estimate.

The speed of a model on some data is the median ``images_per_s`` of the store's runs that trained
it (their metrics.jsonl); a run's cost is its epochs x training images / that speed.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ekdcli.engine.progress import format_seconds
from ekdcli.store import rundir
from ekdcli.store.layout import Store


@dataclass(frozen=True)
class PlannedRun:
    """One run of a plan: what it trains (``arch`` on ``data``) and for how long."""

    arch: str
    data: str
    epochs: int
    train_images: int


def recorded_speed(store: Store, arch: str, data: str) -> float | None:
    """Median training images per second of the store's runs of ``arch`` on ``data`` (None: no run yet)."""
    speeds: list[float] = []
    if not store.runs_dir().is_dir():
        return None
    for run in sorted(store.runs_dir().iterdir()):
        if not rundir.is_run_dir(run):
            continue
        values = rundir.read_config(run)
        if arch not in (values.get("student"), values.get("model")) or values.get("data") != data:
            continue
        speeds += [
            float(r["images_per_s"])
            for r in rundir.read_metrics(run)
            if isinstance(r.get("images_per_s"), (int, float)) and r["images_per_s"] > 0
        ]
    return statistics.median(speeds) if speeds else None


def estimate(store: Store, runs: list[PlannedRun], jobs: int = 1) -> str:
    """One line: the plan's training time from recorded speeds, and the runs no earlier run measured."""
    known, unknown = 0.0, []
    speeds: dict[tuple[str, str], float | None] = {}
    for run in runs:
        key = (run.arch, run.data)
        if key not in speeds:
            speeds[key] = recorded_speed(store, run.arch, run.data)
        speed = speeds[key]
        if speed is None:
            unknown.append(run)
        else:
            known += run.epochs * run.train_images / speed
    parts = []
    if len(unknown) < len(runs):
        measured = len(runs) - len(unknown)
        parts.append(
            f"about {format_seconds(known)} of training for {measured} run(s) at the speeds earlier runs "
            f"measured" + (f" ({format_seconds(known / jobs)} with --jobs {jobs})" if jobs > 1 else "")
        )
    if unknown:
        pairs = sorted({f"{r.arch} on {r.data}" for r in unknown})
        parts.append(
            f"{len(unknown)} run(s) of {', '.join(pairs)} not estimated (no earlier run measured them)"
        )
    return "; ".join(parts) if parts else "no runs"

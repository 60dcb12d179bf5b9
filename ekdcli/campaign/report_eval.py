"""How ``ekd report`` evaluates a campaign's runs: on the test images the runs were measured on,
and with ``jobs`` > 1 in parallel.

Parallel evaluation hands ``ekd evaluate`` commands (a share of the runs each) to the local
executor, which fills the store's evaluation cache; the report's own ``ekd evaluate`` job then
reads every number from that cache, so the numbers are the same as a sequential report's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ekdcli.config import Config
from ekdcli.sdk.contracts import ExecTask, TaskOutcome
from ekdcli.sdk.plugins import registry
from ekdcli.store import rundir
from ekdcli.util.errors import JobError


@dataclasses.dataclass
class MeasuredImages:
    limit: int | None  # the first ``limit`` test images (None: all)
    note: str  # for the report's preamble


def measured_images(runs: list[Path]) -> MeasuredImages:
    """The test images the runs were measured on: their common ``limit_test``, else the full
    test set (said, with why)."""
    limits: set[int | None] = {rundir.read_config(run).get("limit_test") for run in runs}
    if limits == {None}:
        return MeasuredImages(None, "every test image, as the runs were measured")
    (limit,) = limits if len(limits) == 1 else (None,)
    if limit is not None:
        return MeasuredImages(
            int(limit), f"the first {limit} test images, the ones the runs were measured on"
        )
    shown = ", ".join("all" if v is None else str(v) for v in sorted(limits, key=lambda v: v or 0))
    return MeasuredImages(
        None,
        f"every test image: the runs were measured on different test subsets ({shown}), so none is common",
    )


def with_test_images(config: Config, images: MeasuredImages) -> Config:
    return dataclasses.replace(config, limit_test=images.limit)


def evaluate_in_parallel(config: Config, runs: list[Path], which: str, jobs: int, logs: Path) -> None:
    """Fill the evaluation cache with ``jobs`` ``ekd evaluate`` processes (each a share of the runs)."""
    jobs = min(jobs, len(runs))
    if jobs <= 1:
        return
    store = str(config.store_root().resolve())
    flags = ["--split", "test", "--which", which, "--store", store, "--quiet"]
    if config.limit_test is not None:
        flags += ["--limit-test", str(config.limit_test)]
    if config.device != "auto":
        flags += ["--device", config.device]
    tasks = [
        ExecTask(
            f"evaluate-{i}",
            ["evaluate", *[str(r) for r in runs[i::jobs]], *flags],
            str(logs / f"evaluate-{i}.log"),
        )
        for i in range(jobs)
    ]
    failed: list[TaskOutcome] = []
    executor = registry("executors").get("local").build(jobs=jobs)
    executor.run(
        tasks, lambda task: None, lambda task, outcome: None if outcome.ok else failed.append(outcome)
    )
    if failed:
        raise JobError(f"evaluating the runs failed: {failed[0].error} (log {logs}/{failed[0].key}.log).")


def recorded_jobs(definition: dict[str, Any] | None) -> int:
    """The runs at once a campaign's sweep used (its report evaluates that many at once)."""
    jobs = (definition or {}).get("jobs")
    return jobs if isinstance(jobs, int) and jobs > 0 else 1

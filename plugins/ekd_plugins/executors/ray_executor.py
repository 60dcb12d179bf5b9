"""The ``ray`` executor: each task a Ray task, on a cluster or on a local Ray runtime.

``address`` (``--ray-address``, else ``RAY_ADDRESS``) names a running cluster; without one a
local runtime is started for the sweep and shut down after it.  Every node runs its task as
``python -m ekdcli ...`` with its own Python, so ekd (and the plugins the runs use) must be
installed on every node, and the store (where the tasks read configs and write runs and logs)
must be a path every node shares.  A task asks Ray for one GPU where the cluster has GPUs, else
for ``cpus_per_run`` CPUs (default: the cluster's CPUs split between ``jobs``), and its process
gets that many threads.  At most ``jobs`` tasks are in flight.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from ekd_plugins.executors import process
from ekdcli.sdk.contracts import ExecTask, Executor, TaskOutcome
from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.options import as_int, owner

INSTALL_HINT = "the ray executor needs Ray, which is not installed; install it with pip install 'ekd[ray]'."


def _run_on_node(task: ExecTask, threads: int | None) -> TaskOutcome:
    """The body of one Ray task (runs on a worker node)."""
    return process.run(task, process.thread_env(threads) if threads else None)


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, jobs: int = 1, address: str | None = None, cpus_per_run: int | None = None) -> None:
        try:
            import ray  # noqa: F401 - only to fail early with the install hint
        except ImportError:
            raise UsageError(INSTALL_HINT) from None
        who = owner("executor", "ray")
        self.jobs = as_int(who, "jobs", jobs, minimum=1)
        self.cpus_per_run = (
            None if cpus_per_run is None else as_int(who, "cpus_per_run", cpus_per_run, minimum=1)
        )
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        # "local" asks Ray for a runtime on this machine, like no address at all
        self.remote = self.address not in (None, "local")
        self.where = f"the Ray cluster at {self.address}" if self.remote else "a local Ray runtime"

    def describe(self) -> str:
        return f"ray: up to {self.jobs} run{'s' if self.jobs > 1 else ''} at once on {self.where}"

    def _resources(self, ray: Any) -> tuple[dict[str, Any], int | None]:
        """Ray resources of one task and the CPU threads its process gets (None on GPUs)."""
        cluster = ray.cluster_resources()
        if cluster.get("GPU", 0) >= 1:
            return {"num_gpus": 1}, None
        cpus = self.cpus_per_run or max(1, int(cluster.get("CPU", 1)) // self.jobs)
        return {"num_cpus": cpus}, cpus

    def run(
        self,
        tasks: Sequence[ExecTask],
        on_start: Callable[[ExecTask], None],
        on_done: Callable[[ExecTask, TaskOutcome], None],
    ) -> None:
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        try:
            resources, threads = self._resources(ray)
            remote = ray.remote(_run_on_node).options(max_retries=0, **resources)
            self._loop(ray, remote, threads, list(tasks), on_start, on_done)
        finally:
            if started_here:
                ray.shutdown()

    def _loop(
        self,
        ray: Any,
        remote: Any,
        threads: int | None,
        pending: list[ExecTask],
        on_start: Callable[[ExecTask], None],
        on_done: Callable[[ExecTask, TaskOutcome], None],
    ) -> None:
        in_flight: dict[Any, ExecTask] = {}
        try:
            while pending or in_flight:
                while pending and len(in_flight) < self.jobs:
                    task = pending.pop(0)
                    in_flight[remote.remote(task, threads)] = task
                    on_start(task)
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    task = in_flight.pop(ref)
                    on_done(task, self._outcome(ray, ref, task))
        finally:
            for ref in in_flight:  # interrupted: the tasks stop their processes as a Ctrl-C would
                ray.cancel(ref)

    @staticmethod
    def _outcome(ray: Any, ref: Any, task: ExecTask) -> TaskOutcome:
        try:
            return ray.get(ref)
        except Exception as exc:  # the worker died, or Ray could not run the task
            line = " ".join(str(exc).split())[:300]
            return TaskOutcome(task.key, 1, f"the Ray task failed: {type(exc).__name__}: {line}")

"""The ``ray`` executor: each task a Ray task, on a cluster or on a local Ray runtime.

``address`` (``--ray-address``, else ``RAY_ADDRESS``) names a running cluster; without one a
local runtime is started for the sweep and shut down after it.  Every node runs its task as
``python -m ekdcli ...`` with its own Python, so ekd (and the plugins the runs use) must be
installed on every node, and the store (where the tasks read configs and write runs and logs)
must be a path every node shares.  A task asks Ray for one GPU (``P`` for a task of ``P``
processes, ``--nproc P``) where the cluster has GPUs, else for ``cpus_per_run`` CPUs (default:
the cluster's CPUs split between ``jobs``), and its process gets that many threads.  At most
``jobs`` tasks are in flight.  An address with nothing behind it is refused before the campaign
starts (``check``); Ray's own log lines stay out of ekd's output unless ``verbose``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from ekd_plugins.executors import process
from ekdcli.sdk.contracts import ExecTask, Executor, TaskOutcome
from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.options import as_int, owner

INSTALL_HINT = "the ray executor needs Ray, which is not installed; install it with pip install 'ekd[ray]'."
CONNECT_TIMEOUT_S = 10.0


def _run_on_node(task: ExecTask, threads: int | None) -> TaskOutcome:
    """The body of one Ray task (runs on a worker node)."""
    return process.run(task, process.thread_env(threads) if threads else None)


class RayExecutor(Executor):
    name = "ray"

    def __init__(
        self,
        jobs: int = 1,
        address: str | None = None,
        cpus_per_run: int | None = None,
        verbose: bool = False,
    ) -> None:
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
        self.verbose = bool(verbose)

    def check(self) -> None:
        """Refuse, in seconds, an address where no Ray cluster answers (else ``ray.init`` retries
        for minutes); ``auto`` and ``ray://`` addresses are left to Ray."""
        if not self.remote or self.address is None or "://" in self.address or ":" not in self.address:
            return
        host, _, port = self.address.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
                return
        except ValueError:
            reason = f"{port!r} is not a port number"
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
        raise UsageError(
            f"no Ray cluster answers at {self.address} ({reason}); start one there ('ray start --head'), "
            "or give the right --ray-address / RAY_ADDRESS, or run with --executor local."
        )

    def describe(self) -> str:
        return f"ray: up to {self.jobs} run{'s' if self.jobs > 1 else ''} at once on {self.where}"

    def _resources(self, ray: Any) -> tuple[dict[str, Any], int | None]:
        """Ray resources of one single-process task and the CPU threads its process gets (None on GPUs)."""
        cluster = ray.cluster_resources()
        if cluster.get("GPU", 0) >= 1:
            return {"num_gpus": 1}, None
        cpus = self.cpus_per_run or max(1, int(cluster.get("CPU", 1)) // self.jobs)
        return {"num_cpus": cpus}, cpus

    @staticmethod
    def _scaled(resources: dict[str, Any], processes: int) -> dict[str, Any]:
        """A task of ``processes`` processes asks for that many GPUs (or CPU shares)."""
        return {key: value * processes for key, value in resources.items()}

    def run(
        self,
        tasks: Sequence[ExecTask],
        on_start: Callable[[ExecTask], None],
        on_done: Callable[[ExecTask, TaskOutcome], None],
    ) -> None:
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            self.check()
            quiet = logging.INFO if self.verbose else logging.ERROR
            ray.init(
                address=self.address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=quiet,
                configure_logging=True,
            )
        try:
            resources, threads = self._resources(ray)
            remote = ray.remote(_run_on_node)
            self._loop(ray, (remote, resources), threads, list(tasks), on_start, on_done)
        finally:
            if started_here:
                ray.shutdown()

    def _loop(
        self,
        ray: Any,
        remote_and_resources: tuple[Any, dict[str, Any]],
        threads: int | None,
        pending: list[ExecTask],
        on_start: Callable[[ExecTask], None],
        on_done: Callable[[ExecTask, TaskOutcome], None],
    ) -> None:
        remote, resources = remote_and_resources
        in_flight: dict[Any, ExecTask] = {}
        try:
            while pending or in_flight:
                while pending and len(in_flight) < self.jobs:
                    task = pending.pop(0)
                    sized = remote.options(max_retries=0, **self._scaled(resources, task.processes))
                    in_flight[sized.remote(task, threads)] = task
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

"""The ``local`` executor: up to ``jobs`` tasks at once, each a process on this machine.

With GPUs (``CUDA_VISIBLE_DEVICES``, else the ones the NVIDIA driver lists) worker slot ``i`` is pinned to GPU
``i mod n``, or a task of ``P`` processes (``--nproc P``) to ``P`` GPUs of its own (at most
``n // P`` such tasks at once); on the CPU the threads are split between the slots (each child
gets ``cpus // jobs``; ``ekd sweep`` sets a campaign's own count in the task's environment).
``time_limit`` (minutes) stops a task that runs longer (Ctrl-C, so it saves its checkpoint)
and reports it failed.  The loop runs in the calling thread, so ``on_start``/``on_done`` do too.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from subprocess import Popen
from typing import IO

from ekd_plugins.executors import process
from ekdcli.sdk.contracts import ExecTask, Executor, TaskOutcome
from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.options import as_float, as_int, owner

POLL_SECONDS = 0.2


NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one entry per GPU the driver sees (Linux)


def visible_gpus() -> list[str]:
    """GPU ids a child may be pinned to: ``CUDA_VISIBLE_DEVICES`` when set, else every GPU the
    NVIDIA driver lists (read without importing torch: the sweep itself stays a small process)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    try:
        count = len(list(NVIDIA_GPUS.iterdir()))
    except OSError:  # no NVIDIA driver: a CPU machine
        return []
    return [str(i) for i in range(count)]


class LocalExecutor(Executor):
    name = "local"
    remote = False

    def __init__(self, jobs: int = 1, time_limit: float | None = None) -> None:
        who = owner("executor", "local")
        self.jobs = as_int(who, "jobs", jobs, minimum=1)
        self.time_limit = (
            None if time_limit is None else as_float(who, "time_limit", time_limit, positive=True)
        )
        self.gpus = visible_gpus()
        self.threads = max(1, process.available_cpus() // self.jobs)

    def describe(self) -> str:
        at_once = f"up to {self.jobs} run{'s' if self.jobs > 1 else ''} at once"
        if self.gpus:
            return f"local: {at_once}, each pinned to one of GPU {', '.join(self.gpus)}"
        if self.jobs == 1:
            return f"local: {at_once}"
        return f"local: {at_once}, {self.threads} CPU thread{'s' if self.threads > 1 else ''} each"

    def slot_env(self, slot: int, processes: int = 1) -> dict[str, str]:
        """The environment of worker slot ``slot``: its GPU(s), and its share of the CPU threads."""
        env = process.thread_env(self.threads) if self.jobs > 1 else {}
        if self.gpus:
            first = slot * processes
            env["CUDA_VISIBLE_DEVICES"] = ",".join(
                self.gpus[(first + k) % len(self.gpus)] for k in range(processes)
            )
        return env

    def slots(self, tasks: Sequence[ExecTask]) -> int:
        """Tasks at once: ``jobs``, and with GPUs no more than the GPU groups the largest task needs."""
        processes = max((task.processes for task in tasks), default=1)
        if not self.gpus:
            return self.jobs
        if processes > len(self.gpus):
            raise UsageError(
                f"a task runs {processes} processes, one GPU each, but this machine has {len(self.gpus)} GPU(s) "
                f"visible ({', '.join(self.gpus)}); lower --nproc."
            )
        return min(self.jobs, len(self.gpus) // processes)

    def run(
        self,
        tasks: Sequence[ExecTask],
        on_start: Callable[[ExecTask], None],
        on_done: Callable[[ExecTask, TaskOutcome], None],
    ) -> None:
        pending = deque(tasks)
        running: dict[int, tuple[ExecTask, Popen[bytes], IO[bytes]]] = {}
        begun: dict[int, float] = {}
        slots = self.slots(tasks)
        try:
            while pending or running:
                for slot in range(slots):
                    if slot not in running and pending:
                        task = pending.popleft()
                        proc, log = process.start(task, self.slot_env(slot, task.processes))
                        running[slot], begun[slot] = (task, proc, log), time.monotonic()
                        on_start(task)
                for slot, (task, proc, log) in list(running.items()):
                    returncode = proc.poll()
                    timed_out = returncode is None and self._over_time(begun[slot])
                    if timed_out:
                        process.stop([proc])  # Ctrl-C: it saves its checkpoint first
                        returncode = proc.returncode
                    if returncode is not None:
                        log.close()
                        del running[slot]
                        on_done(task, self._outcome(task, returncode, timed_out))
                if running:
                    time.sleep(POLL_SECONDS)
        finally:
            process.stop([proc for _, proc, _ in running.values()])
            for _, _, log in running.values():
                log.close()

    def _over_time(self, begun: float) -> bool:
        return self.time_limit is not None and time.monotonic() - begun > 60 * self.time_limit

    def _outcome(self, task: ExecTask, returncode: int, timed_out: bool) -> TaskOutcome:
        if timed_out:
            return TaskOutcome(task.key, 124, f"stopped after its time limit of {self.time_limit:g} min")
        return process.outcome(task, returncode)

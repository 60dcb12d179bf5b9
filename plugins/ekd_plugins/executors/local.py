"""The ``local`` executor: up to ``jobs`` tasks at once, each a process on this machine.

With GPUs (``CUDA_VISIBLE_DEVICES``, else the ones the NVIDIA driver lists) worker slot ``i`` is pinned to GPU
``i mod n``; on the CPU the threads are split between the slots (each child gets
``cpus // jobs``).  The loop runs in the calling thread, so ``on_start``/``on_done`` do too.
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
from ekdcli.sdk.options import as_int, owner

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

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = as_int(owner("executor", "local"), "jobs", jobs, minimum=1)
        self.gpus = visible_gpus()
        self.threads = max(1, process.available_cpus() // self.jobs)

    def describe(self) -> str:
        at_once = f"up to {self.jobs} run{'s' if self.jobs > 1 else ''} at once"
        if self.gpus:
            return f"local: {at_once}, each pinned to one of GPU {', '.join(self.gpus)}"
        if self.jobs == 1:
            return f"local: {at_once}"
        return f"local: {at_once}, {self.threads} CPU thread{'s' if self.threads > 1 else ''} each"

    def slot_env(self, slot: int) -> dict[str, str]:
        """The environment of worker slot ``slot``: its GPU, and its share of the CPU threads."""
        env = process.thread_env(self.threads) if self.jobs > 1 else {}
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        return env

    def run(
        self,
        tasks: Sequence[ExecTask],
        on_start: Callable[[ExecTask], None],
        on_done: Callable[[ExecTask, TaskOutcome], None],
    ) -> None:
        pending = deque(tasks)
        running: dict[int, tuple[ExecTask, Popen[bytes], IO[bytes]]] = {}
        try:
            while pending or running:
                for slot in range(self.jobs):
                    if slot not in running and pending:
                        task = pending.popleft()
                        proc, log = process.start(task, self.slot_env(slot))
                        running[slot] = (task, proc, log)
                        on_start(task)
                for slot, (task, proc, log) in list(running.items()):
                    returncode = proc.poll()
                    if returncode is not None:
                        log.close()
                        del running[slot]
                        on_done(task, process.outcome(task, returncode))
                if running:
                    time.sleep(POLL_SECONDS)
        finally:
            process.stop([proc for _, proc, _ in running.values()])
            for _, _, log in running.values():
                log.close()

"""One campaign task as a child process: its environment, its log file, and the line saying why it failed.

Shared by the executors.  A child dies with the process that started it (Linux: the parent-death
signal), so killing a sweep never leaves orphaned runs writing to the store; their last
checkpoints stay, and the next ``ekd sweep`` resumes them.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ekdcli.sdk.contracts import ExecTask, TaskOutcome

_PR_SET_PDEATHSIG = 1
_TAIL_BYTES = 65536
THREAD_VARIABLES = ("EKD_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    """The variables that give a child ``threads`` CPU threads (ekd's runtime reads EKD_NUM_THREADS)."""
    return dict.fromkeys(THREAD_VARIABLES, str(threads))


def available_cpus() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def set_signal() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was set
            os._exit(1)

    return set_signal


def start(
    task: ExecTask, env: dict[str, str] | None = None, python: str = sys.executable
) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """Start ``task`` in its own session (a Ctrl-C of the terminal reaches the executor, which
    forwards it once), its output appended to its log; returns the process and the open log."""
    log_path = Path(task.log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    command = task.command(python)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    log.write(f"=== {stamp} {' '.join(command)}\n".encode())
    log.flush()
    cwd = task.cwd if task.cwd and Path(task.cwd).is_dir() else None
    child_env = {**os.environ, **(env or {}), **task.env}
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=child_env,
            start_new_session=True,
            preexec_fn=_die_with_parent(),  # children are started from one thread only
        )
    except BaseException:
        log.close()
        raise
    return process, log


def outcome(task: ExecTask, returncode: int) -> TaskOutcome:
    """The task's exit code and, when it failed, the last ``error:`` line of its log (else the code)."""
    if returncode == 0:
        return TaskOutcome(task.key, 0)
    return TaskOutcome(task.key, returncode, error_line(Path(task.log), returncode))


def error_line(log: Path, returncode: int) -> str:
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - _TAIL_BYTES))
            tail = handle.read().decode("utf-8", "replace")
    except OSError:
        tail = ""
    for line in reversed(tail.splitlines()):
        if line.startswith("error: "):
            return line.removeprefix("error: ").strip()
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    last = next((line.strip() for line in reversed(tail.splitlines()) if line.strip()), "")
    return f"exit code {returncode}" + (f" ({last[:200]})" if last else "")


def stop(processes: list[subprocess.Popen[bytes]], grace_seconds: float = 60.0) -> None:
    """Ask each running child to stop (one SIGINT: ekd saves a checkpoint after the current step),
    then kill the ones still running after ``grace_seconds``."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace_seconds
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(task: ExecTask, env: dict[str, str] | None = None) -> TaskOutcome:
    """Run ``task`` to its end in this process's child (a Ray worker's way)."""
    process, log = start(task, env)
    try:
        returncode = process.wait()
    except BaseException:  # a cancelled task: stop the child as a Ctrl-C would
        stop([process])
        raise
    finally:
        log.close()
    return outcome(task, returncode)

"""The ``slurm`` executor: each task a Slurm job submitted with submitit (``pip install 'ekd[slurm]'``).

Options (``ekd sweep --executor slurm --executor-option KEY=VALUE``): ``partition``, ``account``,
``time_limit`` (minutes; also ``--time-limit``), ``gpus_per_run`` (GPUs of a one-process task,
default 1; a task of ``P`` processes, ``--nproc P``, gets ``P`` times that), ``cpus_per_run``,
``mem`` (``"32G"``), ``setup`` (shell lines run before each job, e.g. ``["module load cuda"]``),
``array`` (true: all tasks as one job array instead of one job each), ``folder`` (submitit's
files; default ``<campaign>/logs/submitit``), ``cluster`` (``slurm``; ``local`` runs the jobs as
processes on this machine through submitit, as the tests do).  At most ``jobs`` tasks are queued
or running at once (an array's parallelism).

A job runs ``python -m ekdcli <args>`` on its node, so ekd must be installed there and the store
must be a path every node sees.  On preemption or at its time limit Slurm signals the job (USR2,
90 s ahead); the job then asks its ekd process to stop (Ctrl-C: it saves its checkpoint) and
submitit requeues it with the task's ``resume_args`` (``ekd ... --resume RUN_DIR``), so it
continues from its checkpoint.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from subprocess import Popen
from typing import Any

from ekd_plugins.executors import process
from ekdcli.sdk.contracts import ExecTask, Executor, TaskOutcome
from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.options import as_float, as_int, owner

INSTALL_HINT = (
    "the slurm executor needs submitit, which is not installed; install it with pip install 'ekd[slurm]'."
)
POLL_SECONDS = 5.0
LOCAL_POLL_SECONDS = 0.5
CLUSTERS = ("slurm", "local")


class SlurmTask:
    """What a job runs: the task's ekd process; ``checkpoint`` is submitit's preemption hook."""

    def __init__(self, task: ExecTask, env: dict[str, str]) -> None:
        self.task, self.env = task, env
        self._process: Popen[bytes] | None = None

    def __call__(self) -> TaskOutcome:
        self._process, log = process.start(self.task, self.env)
        try:
            returncode = self._process.wait()
        finally:
            log.close()
        return process.outcome(self.task, returncode)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Preempted or out of time: stop ekd (it saves its checkpoint), requeue from there."""
        from submitit.helpers import DelayedSubmission

        if self._process is not None:
            process.stop([self._process], grace_seconds=60.0)
        return DelayedSubmission(SlurmTask(self.task.continued(), self.env))

    def __getstate__(self) -> dict[str, Any]:
        return {"task": self.task, "env": self.env, "_process": None}


class SlurmExecutor(Executor):
    name = "slurm"

    def __init__(
        self,
        jobs: int = 1,
        partition: str | None = None,
        account: str | None = None,
        time_limit: float | None = None,
        gpus_per_run: int | None = None,
        cpus_per_run: int | None = None,
        mem: str | None = None,
        setup: list[str] | None = None,
        array: bool = False,
        folder: str | None = None,
        cluster: str = "slurm",
    ) -> None:
        try:
            import submitit  # noqa: F401 - only to fail early with the install hint
        except ImportError:
            raise UsageError(INSTALL_HINT) from None
        who = owner("executor", "slurm")
        self.jobs = as_int(who, "jobs", jobs, minimum=1)
        if cluster not in CLUSTERS:
            raise UsageError(
                f"option 'cluster' of executor 'slurm' must be one of {', '.join(CLUSTERS)}, not {cluster!r}."
            )
        self.cluster = cluster
        self.remote = cluster == "slurm"
        self.time_limit = (
            None if time_limit is None else as_float(who, "time_limit", time_limit, positive=True)
        )
        default_gpus = 1 if cluster == "slurm" else 0
        self.gpus = (
            default_gpus if gpus_per_run is None else as_int(who, "gpus_per_run", gpus_per_run, minimum=0)
        )
        self.cpus = None if cpus_per_run is None else as_int(who, "cpus_per_run", cpus_per_run, minimum=1)
        self.partition, self.account, self.mem = partition, account, mem
        self.setup = [str(line) for line in setup or []]
        self.array, self.folder = bool(array), folder

    def describe(self) -> str:
        where = f"partition {self.partition}" if self.partition else "the default partition"
        how = "one job array" if self.array else "one job per run"
        local = " (run locally through submitit)" if self.cluster == "local" else ""
        return f"slurm: {how}, up to {self.jobs} at once on {where}{local}"

    def check(self) -> None:
        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise UsageError(
                "the slurm executor submits with sbatch, which is not on this machine's PATH; run ekd sweep "
                "on a login node of the cluster (or --executor-option cluster=local to try it here)."
            )

    # ------------------------------------------------------------------ submission
    def parameters(self, processes: int) -> dict[str, Any]:
        """submitit's parameters of a job running a task of ``processes`` processes."""
        params: dict[str, Any] = {"name": "ekd", "nodes": 1, "tasks_per_node": 1}
        params["gpus_per_node"] = self.gpus * processes
        if self.time_limit is not None:
            params["timeout_min"] = max(1, round(self.time_limit))
        if self.cpus is not None:
            params["cpus_per_task"] = self.cpus * processes
        slurm = {"partition": self.partition, "account": self.account, "mem": self.mem}
        params.update({f"slurm_{k}": v for k, v in slurm.items() if v is not None})
        if self.setup:
            params["slurm_setup"] = self.setup
        params["slurm_array_parallelism"] = self.jobs
        return params

    def executor(self, folder: Path, processes: int) -> Any:
        import submitit

        executor = submitit.AutoExecutor(folder=str(folder), cluster=self.cluster)
        params = self.parameters(processes)
        if self.cluster == "local":  # submitit's local executor takes only the generic options
            params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
        executor.update_parameters(**params)
        return executor

    def env(self) -> dict[str, str]:
        return process.thread_env(self.cpus) if self.cpus else {}

    def submit(self, tasks: Sequence[ExecTask], folder: Path) -> list[tuple[Any, ExecTask]]:
        """Submit ``tasks`` (one job each, or job arrays grouped by their process count)."""
        submitted: list[tuple[Any, ExecTask]] = []
        for processes in sorted({task.processes for task in tasks}):
            group = [task for task in tasks if task.processes == processes]
            executor = self.executor(folder, processes)
            if self.array:
                with executor.batch():
                    jobs = [executor.submit(SlurmTask(task, self.env())) for task in group]
                submitted += list(zip(jobs, group, strict=True))
            else:
                submitted += [(executor.submit(SlurmTask(task, self.env())), task) for task in group]
        return submitted

    # ------------------------------------------------------------------ running
    def run(
        self,
        tasks: Sequence[ExecTask],
        on_start: Callable[[ExecTask], None],
        on_done: Callable[[ExecTask, TaskOutcome], None],
    ) -> None:
        if not tasks:
            return
        folder = Path(self.folder) if self.folder else Path(tasks[0].log).parent / "submitit"
        folder.mkdir(parents=True, exist_ok=True)
        pending = list(tasks)
        in_flight: list[tuple[Any, ExecTask]] = []
        try:
            while pending or in_flight:
                room = len(pending) if self.array else self.jobs - len(in_flight)
                if room > 0 and pending:
                    batch, pending = pending[:room], pending[room:]
                    for job, task in self.submit(batch, folder):
                        in_flight.append((job, task))
                        on_start(task)
                for job, task in [(j, t) for j, t in in_flight if j.done()]:
                    in_flight.remove((job, task))
                    on_done(task, self._outcome(job, task))
                if in_flight:
                    time.sleep(LOCAL_POLL_SECONDS if self.cluster == "local" else POLL_SECONDS)
        finally:
            for job, _ in in_flight:  # interrupted: Slurm stops them (their checkpoints stay)
                job.cancel(check=False)

    @staticmethod
    def _outcome(job: Any, task: ExecTask) -> TaskOutcome:
        try:
            outcome = job.result()
        except Exception as exc:  # the job failed outside ekd (node failure, cancelled, out of time)
            line = " ".join(str(exc).split())[-300:]
            return TaskOutcome(
                task.key, 1, f"the Slurm job {job.job_id} failed: {type(exc).__name__}: {line}"
            )
        return outcome if isinstance(outcome, TaskOutcome) else TaskOutcome(task.key, 1, "no outcome")

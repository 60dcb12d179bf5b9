"""``ekd sweep``: run a campaign (configs x grid x seeds) with an executor, skipping finished runs,
resuming interrupted ones from their checkpoints and retrying failed ones only when asked.

Order of work: validate everything (configs, grid, names, methods, teachers) and plan; take the
campaign's lock (one sweep per campaign); build the missing prerequisites once (teachers, then
their scores; one sweep at a time per store); then hand the runs to the executor.  A run's state
file says what the sweep last did with it; the run directory (``summary.json``, ``checkpoint.pt``)
says how far it got, so a sweep killed at any moment continues where the runs stopped.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ekdcli.campaign.campaign import (
    Campaign,
    CampaignRun,
    define,
    differences,
    growth,
    load,
    parse_grid,
    parse_seeds,
)
from ekdcli.campaign.prerequisites import Prerequisite, check_ready, collect, command_of, needs_of
from ekdcli.campaign.sweep_cost import cost_line, teacher_lines
from ekdcli.config import Config, parse_assignments
from ekdcli.jobs.common import console, open_store
from ekdcli.jobs.console import Console
from ekdcli.sdk.contracts import ExecTask, Executor, TaskOutcome
from ekdcli.sdk.plugins import registry
from ekdcli.store import locks, rundir
from ekdcli.store.campaign import PREREQUISITES_LOCK, CampaignDir, campaign_names
from ekdcli.store.layout import Store
from ekdcli.util.errors import UsageError

PREREQUISITES_WAIT_S = 7 * 24 * 3600.0  # another sweep training a teacher: wait for it, however long


@dataclass
class SweepRequest:
    """What ``ekd sweep`` was asked (the command line, minus the store and output flags)."""

    configs: list[str] = field(default_factory=list)
    seeds: str | None = None
    grid: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)
    name: str | None = None
    executor: str = "local"
    jobs: int = 1
    ray_address: str | None = None
    dry_run: bool = False
    retry_failed: bool = False
    teacher_config: str | None = None
    cpus_per_run: int | None = None
    nproc: int | None = None  # every run as N data-parallel processes (N GPUs each)
    executor_options: list[str] = field(default_factory=list)  # --executor-option KEY=VALUE
    time_limit: float | None = None  # minutes per run
    retries: int = 0  # automatic re-runs of a run that failed for a reason not its config's


@dataclass
class RunPlan:
    """What the sweep does with one run."""

    run: CampaignRun
    action: str  # start, resume, done (skipped: finished) or failed (skipped: failed before)
    note: str
    args: list[str]
    needs: list[str]  # keys of its prerequisites
    env: dict[str, str] = field(default_factory=dict)  # what fixes its numbers: its CPU threads
    processes: int = 1  # --nproc: its data-parallel processes (GPUs)
    resume_args: list[str] = field(default_factory=list)  # how it continues after an interruption


@dataclass
class Plan:
    campaign: Campaign
    runs: list[RunPlan]
    prerequisites: list[Prerequisite]
    executor: Executor
    new: bool
    grown: list[str] = field(default_factory=list)  # what this sweep adds to an existing campaign
    estimate: str = ""  # the runs to do: their training time at the speeds the store's runs recorded


# ------------------------------------------------------------------ planning
def build_executor(config: Config, request: SweepRequest) -> Executor:
    """The executor plugin, built with ``--jobs`` (and ``--ray-address``); a remote one needs an
    absolute store path, the same on every node."""
    component = registry("executors").get(request.executor)
    declared = component.info.get("options", {})
    options: dict[str, Any] = {"jobs": request.jobs}
    named = (
        ("--ray-address", "address", request.ray_address),
        ("--time-limit", "time_limit", request.time_limit),
    )
    for flag, key, value in named:
        if value is not None:
            if key not in declared:
                users = [c.name for c in registry("executors").list() if key in c.info.get("options", {})]
                raise UsageError(
                    f"{flag} applies to --executor {' or '.join(users)}, not to {component.name!r}."
                )
            options[key] = value
    if request.cpus_per_run is not None and "cpus_per_run" in declared:
        options["cpus_per_run"] = request.cpus_per_run
    if config.verbose and "verbose" in declared:
        options["verbose"] = True
    options.update(executor_options(component.name, declared, request.executor_options))
    executor = component.build(**options)
    executor.check()  # before the campaign folder is written
    store = str(config.store_root())
    if executor.remote and not Path(store).is_absolute():
        raise UsageError(
            f"executor {component.name!r} runs tasks on other machines, so the store must be an absolute "
            f"path that every node sees (a shared filesystem), not {store!r}; pass --store /shared/path."
        )
    return executor


def executor_options(name: str, declared: dict[str, Any], items: list[str]) -> dict[str, Any]:
    """``--executor-option KEY=VALUE`` (VALUE read as TOML, else text), each a declared option."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in declared or key == "jobs":
            known = ", ".join(k for k in declared if k != "jobs") or "none"
            raise UsageError(
                f"--executor-option {item!r}: executor {name!r} takes KEY=VALUE with KEY one of: {known}."
            )
        out[key] = parse_assignments([f"value={text}"])["value"]
    return out


def resolve_campaign(store: Store, request: SweepRequest) -> tuple[Campaign, dict[str, str] | None]:
    """The campaign to run and, for a new one, the config texts to record with it."""
    if not request.configs:
        if request.seeds is not None or request.grid or request.sets or request.teacher_config:
            raise UsageError(
                "--seeds, --grid, --set and --teacher-config define a new campaign; give its CONFIG files too."
            )
        if not request.name:
            raise UsageError("give the campaign's CONFIG files, or --name NAME to continue a campaign.")
        campaign_dir = CampaignDir(store, request.name)
        if not campaign_dir.exists():
            raise UsageError(_no_campaign(store, request.name))
        campaign = load(campaign_dir)
        if request.nproc not in (None, campaign.nproc):
            raise UsageError(
                f"campaign {request.name!r} runs each run as {campaign.nproc} process(es); continue it without "
                "--nproc, or start another campaign with --name."
            )
        return campaign, None
    grid = parse_grid(request.grid)
    campaign_dir, definition, texts = define(
        store,
        request.configs,
        parse_seeds(request.seeds),
        grid,
        list(request.sets),
        request.name,
        request.teacher_config,
    )
    definition["nproc"] = request.nproc or 1
    if not campaign_dir.exists():
        return load(campaign_dir, definition, sources=True), texts
    stored = campaign_dir.read_definition()
    changed = differences(stored, definition)
    added = growth(stored, definition) if changed else None
    if added:  # more configs, seeds or grid values: the campaign grows, its runs so far stay
        kept: dict[str, Any] = {k: stored[k] for k in ("created", "cwd", "threads") if k in stored}
        grown = load(campaign_dir, {**definition, **kept}, sources=True)
        grown.definition["grown"] = [*stored.get("grown", []), {"added": added, "at": definition["created"]}]
        return grown, texts
    if changed:
        raise UsageError(
            f"campaign {campaign_dir.name!r} already exists with {', '.join(changed)}; continue it as it was "
            f"with 'ekd sweep --name {campaign_dir.name}', or give this one another --name."
        )
    return load(campaign_dir, stored), None


def _no_campaign(store: Store, name: str) -> str:
    names = campaign_names(store)
    known = f" It has: {', '.join(names)}." if names else ""
    return f"no campaign {name!r} in the store {store.root}.{known} Start one with 'ekd sweep CONFIG... --name {name}'."


THREAD_VARIABLES = ("EKD_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def campaign_threads(stored: dict[str, Any] | None, request: SweepRequest) -> int:
    """CPU threads per run, fixed when the campaign starts (``--cpus-per-run``, else this machine's
    CPUs split between ``--jobs``) and recorded with it: the thread count changes a CPU run's
    numbers, so a later sweep with another ``--jobs`` keeps it."""
    recorded = (stored or {}).get("threads")
    if isinstance(recorded, int):
        if request.cpus_per_run not in (None, recorded):
            raise UsageError(
                f"the campaign's runs use {recorded} CPU thread(s) each (recorded when it started; its numbers "
                f"depend on it); continue it without --cpus-per-run, or start another campaign with --name."
            )
        return recorded
    return request.cpus_per_run or max(1, available_cpus() // max(1, request.jobs))


def thread_env(threads: int) -> dict[str, str]:
    return dict.fromkeys(THREAD_VARIABLES, str(threads))


def recorded_runtime(run_dir: Path, threads: int) -> tuple[list[str], dict[str, str]]:
    """A resumed run keeps the device type, precision and CPU threads it started with (its
    ``environment.json``): flags for its command and its environment."""
    try:
        record = json.loads((run_dir / rundir.ENVIRONMENT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [], thread_env(threads)
    flags = []
    if isinstance(record.get("device"), str):
        flags += ["--device", record["device"].split(":")[0]]
    if isinstance(record.get("precision"), str):
        flags += ["--precision", record["precision"]]
    recorded = record.get("num_threads")
    return flags, thread_env(recorded if isinstance(recorded, int) and recorded > 0 else threads)


def plan_runs(campaign: Campaign, retry_failed: bool) -> tuple[list[RunPlan], list[Prerequisite]]:
    """Each run's action and arguments, and the prerequisites of the runs to do (all validated)."""
    nproc = campaign.nproc
    threads = max(1, (int(campaign.definition.get("threads") or 0) or available_cpus()) // nproc)
    parallel = ["--nproc", str(nproc)] if nproc > 1 else []
    plans: list[RunPlan] = []
    per_run: dict[str, list[Prerequisite]] = {}
    for run in campaign.runs:
        config = campaign.config_of(run)
        needs = needs_of(campaign, run, config)
        run_dir = campaign.dir.run_dir(run.id)
        state = campaign.dir.read_state(run.id)
        command = command_of(config)
        args = [command, "--resume", str(run_dir), *parallel]
        env = thread_env(threads)
        if rundir.is_finished(run_dir):
            action, note = "done", _best(run_dir)
        elif state["state"] == "failed" and not retry_failed:
            action, note = "failed", str(state.get("error", ""))
        elif (run_dir / rundir.CHECKPOINT).is_file():
            action, note = "resume", f"from epoch {rundir.history(run_dir)['epochs_done']}"
            flags, env = recorded_runtime(run_dir, threads)
            args += flags
        else:
            action, note = "start", ""
            args = [command, "--config", str(run.config), *campaign.set_args(run), "--seed", str(run.seed)]
            args += ["--store", str(campaign.dir.store.root), "--run-name", campaign.run_name(run), *parallel]
        if action in ("start", "resume"):
            per_run[run.id] = needs
        resume = [command, "--resume", str(run_dir), *parallel]
        plans.append(RunPlan(run, action, note, args, [n.key for n in needs], env, nproc, resume))
    return plans, collect(per_run)


def _best(run_dir: Path) -> str:
    best = rundir.history(run_dir).get("best_top1")
    return f"best top-1 {100 * best:.2f}%" if isinstance(best, float) else ""


def prepare(config: Config, request: SweepRequest) -> tuple[Plan, dict[str, str] | None]:
    """Everything checked, nothing written: the plan, and the config texts of a new (or grown) campaign."""
    store = open_store(config)
    store = Store(store.root.resolve())  # the runs get it as an absolute path
    executor = build_executor(config, request)
    campaign, texts = resolve_campaign(store, request)
    campaign.definition["threads"] = campaign_threads(campaign.definition, request)
    runs, prerequisites = plan_runs(campaign, request.retry_failed)
    existing = campaign.dir.exists()
    if not existing:  # its report evaluates as many runs at once
        campaign.definition["jobs"] = request.jobs
    grown = campaign.definition["grown"][-1]["added"] if existing and texts is not None else []
    todo = [(p.run, p.action) for p in runs if p.action in ("start", "resume")]
    cost = cost_line(store, campaign, todo, request.jobs) if todo else ""
    return Plan(campaign, runs, prerequisites, executor, not existing, grown, cost), texts


_VERB = {
    "start": "start",
    "resume": "resume",
    "done": "done",
    "failed": "failed (skipped; --retry-failed runs it)",
}


def plan_text(plan: Plan, dry_run: bool) -> str:
    """The campaign, its executor, prerequisites and each run's action (all of --dry-run)."""
    campaign = plan.campaign
    configs = len(campaign.definition.get("configs", []))
    status = "new" if plan.new else f"grown by {', '.join(plan.grown)}" if plan.grown else "continued"
    lines = [
        f"campaign {campaign.name} ({status}): {len(plan.runs)} runs from {configs} config file(s); "
        f"{campaign.dir.path}",
        f"executor: {plan.executor.describe()}; {campaign.definition['threads']} CPU thread(s) per run "
        "(recorded with the campaign: the same numbers whatever --jobs)",
    ]
    if plan.prerequisites:
        lines.append("prerequisites (built once, before the runs that need them):")
        for need in plan.prerequisites:
            state = "ready" if need.ready else f"to build on {need.coverage()}: ekd " + " ".join(need.args)
            lines.append(f"  {need.what}, for {len(need.users)} run(s): {state}")
            lines += teacher_lines(need)
    lines.append("runs:")
    width = max((len(p.run.id) for p in plan.runs), default=0)
    for item in plan.runs:
        note = f"  {item.note}" if item.note else ""
        lines.append(f"  {item.run.id.ljust(width)}  {_VERB[item.action]}{note}")
    counts = {a: sum(p.action == a for p in plan.runs) for a in _VERB}
    todo = counts["start"] + counts["resume"]
    building = sum(not p.ready for p in plan.prerequisites)
    summary = (
        f"{todo} run(s) to do ({counts['resume']} resumed from a checkpoint), {counts['done']} already done, "
        f"{counts['failed']} failed and skipped; {building} prerequisite(s) to build"
    )
    lines.append(("would run: " if dry_run else "") + summary)
    if plan.estimate:
        lines.append(f"estimate: {plan.estimate}")
    return "\n".join(lines)


# ------------------------------------------------------------------ running
def run_sweep(config: Config, request: SweepRequest) -> dict[str, Any]:
    """Plan (``--dry-run`` stops there) and run the campaign; the payload of its final state."""
    say = console(config)
    plan, texts = prepare(config, request)
    say.say(plan_text(plan, dry_run=request.dry_run))
    if request.dry_run:
        return payload(plan.campaign, plan, dry_run=True)
    campaign_dir = plan.campaign.dir
    with campaign_dir.hold():
        if texts is not None:  # a new campaign: record it, then run from its copies of the configs
            campaign_dir.write_definition(plan.campaign.definition, texts)
            plan.campaign = load(campaign_dir)
            plan.runs, plan.prerequisites = plan_runs(plan.campaign, request.retry_failed)
        elif "threads" not in campaign_dir.read_definition():  # started by an earlier ekd: record it now
            campaign_dir.write_definition(plan.campaign.definition, {})
        for item in plan.runs:  # one state file per run from the start; finished runs marked done
            run_dir = str(campaign_dir.run_dir(item.run.id))
            if item.action == "done" and campaign_dir.read_state(item.run.id)["state"] != "done":
                campaign_dir.write_state(item.run.id, "done", run_dir=run_dir)
            elif not campaign_dir.has_state(item.run.id):
                campaign_dir.write_state(item.run.id, "pending", run_dir=run_dir)
        failed = build_prerequisites(plan, say)
        Runner(plan, say, request.retries).run(failed)
    return payload(plan.campaign, plan)


def build_prerequisites(plan: Plan, say: Console) -> dict[str, str]:
    """Build the missing teachers, then the missing score files, each once; the keys that failed
    with why.  One sweep per store does this at a time (another waits for it, then re-checks)."""
    store = plan.campaign.dir.store
    missing = [p for p in plan.prerequisites if not p.ready]
    failed: dict[str, str] = {}
    if not missing:
        return failed
    lock = locks.FileLock(
        store.campaigns_dir() / PREREQUISITES_LOCK,
        f"the prerequisites of the campaigns in {store.root}",
        wait=PREREQUISITES_WAIT_S,
        on_wait=lambda holder: say.say(f"waiting for {holder}, which builds prerequisites in {store.root}"),
    )
    with lock:
        for kind in ("teacher", "scores"):
            wave = [p for p in missing if p.kind == kind and not check_ready(p, store)]
            for item in [p for p in wave if p.after in failed]:
                failed[item.key] = f"its {item.after} failed"
            todo = [p for p in wave if p.after not in failed]
            failed.update(_build(plan, todo, say))
    return failed


def _build(plan: Plan, todo: list[Prerequisite], say: Console) -> dict[str, str]:
    campaign = plan.campaign
    by_task = {p.task: p for p in todo}
    failed: dict[str, str] = {}

    def started(task: ExecTask) -> None:
        item = by_task[task.key]
        say.say(f"building {item.what}, needed by {len(item.users)} run(s); log {task.log}")

    def done(task: ExecTask, outcome: TaskOutcome) -> None:
        item = by_task[task.key]
        if outcome.ok and not check_ready(item, campaign.dir.store):
            outcome = TaskOutcome(task.key, 1, "it finished without writing its file")
        if outcome.ok:
            say.say(f"built {item.what}")
        else:
            failed[item.key] = outcome.error
            say.say(f"failed to build {item.what}: {outcome.error}")

    for item in todo:
        item.write_config()
    env = thread_env(int(campaign.definition.get("threads") or available_cpus()))
    tasks = [_task(campaign, p.task, p.args, env) for p in todo]
    plan.executor.run(tasks, started, done)
    return failed


def _task(campaign: Campaign, key: str, args: list[str], env: dict[str, str]) -> ExecTask:
    return ExecTask(key=key, args=args, log=str(campaign.dir.log_path(key)), cwd=campaign.cwd, env=dict(env))


def _run_task(campaign: Campaign, item: RunPlan) -> ExecTask:
    """A run as a task: its processes, and how an executor that requeues it continues it."""
    task = _task(campaign, item.run.id, item.args, item.env)
    task.processes = item.processes
    task.resume_args = list(item.resume_args)
    task.checkpoint = str(campaign.dir.run_dir(item.run.id) / rundir.CHECKPOINT)
    return task


class Runner:
    """Hands the runs to the executor and records each one's state as it starts and ends; a run
    that failed for a reason other than its config (exit code 2) is run again, from its
    checkpoint where it has one, up to ``retries`` times."""

    def __init__(self, plan: Plan, say: Console, retries: int = 0) -> None:
        self.plan, self.say, self.retries = plan, say, retries
        self.dir = plan.campaign.dir
        self.todo = [p for p in plan.runs if p.action in ("start", "resume")]
        self.by_id = {p.run.id: p for p in self.todo}
        self.running: set[str] = set()
        self.finished = 0
        self.again: list[ExecTask] = []
        self.wave = 0

    def run(self, failed_needs: dict[str, str]) -> None:
        ready = []
        for item in self.todo:
            broken = [key for key in item.needs if key in failed_needs]
            if broken:
                error = f"prerequisite {broken[0]} failed: {failed_needs[broken[0]]}"
                self.dir.write_state(item.run.id, "failed", error=error)
                self.say.say(f"failed   {item.run.id}: {error}")
            else:
                ready.append(item)
        tasks = [_run_task(self.plan.campaign, item) for item in ready]
        try:
            while tasks:
                self.again = []
                self.plan.executor.run(tasks, self.started, self.done)
                self.wave += 1
                tasks = [task.continued() for task in self.again]
        except KeyboardInterrupt:
            for run_id in self.running:  # stopped with a checkpoint: the next sweep resumes them
                self.dir.write_state(run_id, "pending", note="interrupted")
            raise

    def _count(self) -> str:
        return f"[{self.finished}/{len(self.todo)}]"

    def started(self, task: ExecTask) -> None:
        item = self.by_id[task.key]
        attempts = int(self.dir.read_state(task.key).get("attempts", 0)) + 1
        run_dir = str(self.dir.run_dir(task.key))
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.dir.write_state(
            task.key, "running", attempts=attempts, started=started, run_dir=run_dir, log=task.log
        )
        self.running.add(task.key)
        how = f" ({item.action} {item.note})" if item.action == "resume" and not self.wave else ""
        how = f" (retry {self.wave} of {self.retries})" if self.wave else how
        self.say.say(f"{self._count()} started  {task.key}{how}")

    def done(self, task: ExecTask, outcome: TaskOutcome) -> None:
        self.running.discard(task.key)
        run_dir = self.dir.run_dir(task.key)
        if outcome.ok and not rundir.is_finished(run_dir):
            outcome = TaskOutcome(task.key, 1, f"it exited without finishing ({run_dir} has no summary.json)")
        if not outcome.ok and outcome.returncode != 2 and self.wave < self.retries:
            self.again.append(task)  # not the config's fault (that exits 2): run it again
            self.dir.write_state(task.key, "pending", note=f"failed ({outcome.error}); retried")
            self.say.say(f"{self._count()} failed   {task.key}: {outcome.error}; it will be retried")
            return
        self.finished += 1
        if outcome.ok:
            self.dir.write_state(task.key, "done", finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
            self.say.say(f"{self._count()} done     {task.key}: {_best(run_dir)}")
        else:
            self.dir.write_state(task.key, "failed", error=outcome.error, returncode=outcome.returncode)
            self.say.say(f"{self._count()} failed   {task.key}: {outcome.error} (log {task.log})")


# ------------------------------------------------------------------ results
def payload(campaign: Campaign, plan: Plan | None = None, dry_run: bool = False) -> dict[str, Any]:
    """The campaign's runs and states as data (``--json``), from its state files and run directories."""
    runs = []
    for run in campaign.runs:
        state = campaign.dir.read_state(run.id)
        run_dir = campaign.dir.run_dir(run.id)
        entry = {"run": run.id, "state": state["state"], "run_dir": str(run_dir), **rundir.history(run_dir)}
        if state.get("error"):
            entry["error"] = state["error"]
        runs.append(entry)
    counts = {
        state: sum(r["state"] == state for r in runs) for state in ("pending", "running", "done", "failed")
    }
    out: dict[str, Any] = {
        "campaign": campaign.name,
        "dir": str(campaign.dir.path),
        "runs": runs,
        "counts": counts,
        "sweep_pid": campaign.dir.sweep_pid(),
    }
    if plan is not None:
        out["plan"] = {p.run.id: p.action for p in plan.runs}
        out["prerequisites"] = [
            {"what": p.what, "ready": p.ready, "users": p.users, "command": ["ekd", *p.args]}
            for p in plan.prerequisites
        ]
        out["executor"] = plan.executor.describe()
        out["dry_run"] = dry_run
    return out


def failure_message(result: dict[str, Any]) -> str | None:
    """One sentence when runs of the campaign have failed (the command then exits 1)."""
    if result.get("dry_run"):
        return None
    failed = [r["run"] for r in result["runs"] if r["state"] == "failed"]
    if not failed:
        return None
    shown = ", ".join(failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
    name = result["campaign"]
    return (
        f"{len(failed)} of {len(result['runs'])} runs of campaign {name!r} failed ({shown}); see "
        f"'ekd sweep --status {name}' and the logs in {result['dir']}/logs, then run them again with "
        f"'ekd sweep --name {name} --retry-failed'."
    )


def sweep_status(config: Config, name: str) -> dict[str, Any]:
    store = open_store(config)
    campaign_dir = CampaignDir(Store(store.root.resolve()), name)
    if not campaign_dir.exists():
        raise UsageError(_no_campaign(store, name))
    return payload(load(campaign_dir))

"""``ekd distill``: train a student from a teacher with a distiller and an optional augmentation.

The plan (``jobs/plan.py``) and the preparation (``jobs/preparation.py``) come first; this module
claims the run directory, trains and reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.config import Config
from ekdcli.jobs.build import dataset_key, weights_metadata
from ekdcli.jobs.common import (
    check_resume,
    console,
    describe_data,
    describe_recipe,
    hold_run,
    open_store,
    recorded_config,
)
from ekdcli.jobs.console import Console
from ekdcli.jobs.features import check_feature_run
from ekdcli.jobs.plan import plan_methods
from ekdcli.jobs.preparation import Prepared, check_student_name, open_teacher_cache, prepare, resolve_pair
from ekdcli.jobs.provenance import say_teacher
from ekdcli.jobs.record import build_trackers, recorded, run_record

if TYPE_CHECKING:
    from ekdcli.engine import Runtime
    from ekdcli.sdk.contracts import LossSummary, Tracker


@dataclass
class DistillResult:
    """What a distillation made: its run directory, what ran, its accuracies, the objective as run."""

    run_dir: Path
    method: str
    temperature_rule: str | None
    augment: str | None
    teacher: str | None
    student: str
    data: str
    best_top1: float
    best_top5: float
    best_epoch: int
    last_top1: float
    last_top5: float
    objective: dict[str, Any]  # DistillObjective.describe(): the loss as run, for the run's record

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` result (``run_dir`` as text)."""
        return {**dataclasses.asdict(self), "run_dir": str(self.run_dir)}


def check_distill(config: Config, resume: Path | None = None, nproc: int | None = None) -> None:
    """The checks of ``ekd distill`` that need no data, model or torch (``--nproc`` runs them once,
    before it launches the processes)."""
    if resume is not None:
        check_resume(config, Path(resume).resolve())
    open_store(config).check_run_target(config.run_name, resume)
    build_trackers(config)
    plan = plan_methods(config)
    teacher_name, student_name, _ = resolve_pair(config)
    check_feature_run(config, plan.distiller, {"student": student_name, "teacher": teacher_name}, nproc)
    check_student_name(student_name)
    dataset_key(config)


@recorded
def run_distill(config: Config, resume: Path | None = None) -> DistillResult:
    """Check the run target, prepare (teacher, scores), claim the run directory, distill."""
    if resume is not None:
        check_resume(config, Path(resume).resolve())  # before a default teacher is trained
    store = open_store(config)
    store.check_run_target(config.run_name, resume)  # before a teacher is trained or scored
    trackers = build_trackers(config)  # an unknown tracker or a missing package: before any work too
    job = prepare(config)
    plan = job.plan
    prefix = f"distill-{plan.distiller.name}" + (f"-{plan.augmentation.name}" if plan.augmentation else "")
    with contextlib.ExitStack() as held:
        run_dir = hold_run(held, store, config.run_name, prefix, resume)
        return _distill(config, job, run_dir, resume is not None, trackers)


def _distill(
    config: Config, job: Prepared, run_dir: Path, resumed: bool, trackers: list[tuple[str, Tracker]]
) -> DistillResult:
    from ekdcli.engine import fit
    from ekdcli.method.objective import DistillObjective

    say = console(config)
    teacher, runtime, plan = job.teacher, job.runtime, job.plan
    cache = None
    if config.teacher_cache and teacher is not None:
        cache = open_teacher_cache(config, job.dataset, job.data_key, teacher, runtime.precision, say)
    objective = DistillObjective(
        teacher.model if teacher else None, job.distiller, job.augmentation, job.energy, teacher_cache=cache
    )
    _print_header(say, config, job, run_dir)
    with run_record(config, runtime, run_dir, trackers, "distill") as tracking:
        tracking.energy_groups = objective.energy_groups  # sent to the trackers after the setup
        result = fit(
            job.student,
            job.dataset,
            objective,
            job.recipe,
            runtime.options,
            run_dir,
            config_text=recorded_config(config, open_store(config)).to_toml(),
            metadata=_student_metadata(job),
            resume=resumed,
            runtime=runtime,
            tracking=tracking,
        )
        if cache is not None:
            _report_cache(say, cache, runtime)
        _report_rule(say, job.distiller.summary())
        described = objective.describe()
        say.say(
            f"done: best top-1 {100 * result.best_top1:.2f}% (epoch {result.best_epoch}), last top-1 "
            f"{100 * result.last_top1:.2f}% / top-5 {100 * result.last_top5:.2f}%"
        )
    return DistillResult(
        run_dir=run_dir,
        method=plan.distiller.name,
        temperature_rule=plan.rule.name if plan.rule else None,
        augment=plan.augmentation.name if plan.augmentation else None,
        teacher=teacher.arch if teacher else None,
        student=job.student_arch,
        data=job.data_key,
        best_top1=result.best_top1,
        best_top5=result.best_top5,
        best_epoch=result.best_epoch,
        last_top1=result.last_top1,
        last_top5=result.last_top5,
        objective=described,
    )


def _student_metadata(job: Prepared) -> dict[str, Any]:
    return weights_metadata(
        job.student_arch,
        job.dataset,
        job.data_key,
        "ekd distill",
        method=job.plan.distiller.name,
        augment=job.plan.augmentation.name if job.plan.augmentation else None,
        teacher=job.teacher.arch if job.teacher else None,
    )


def _print_header(say: Console, config: Config, job: Prepared, run_dir: Path) -> None:
    """A few short lines: what is trained, from what, with which rule and recipe, where it goes;
    ``--verbose`` adds every setting of the loss and the augmentation."""
    plan = job.plan
    name = plan.distiller.name + (f" + {plan.augmentation.name}" if plan.augmentation else "")
    teacher = job.teacher.arch if job.teacher else "no teacher"
    data = describe_data(config, job.dataset, job.data_key)
    if plan.rule is not None and plan.rule.name != plan.distiller.info.get("temperature_rule"):
        name += f" (temperature rule {plan.rule.name})"  # another rule than the method's own
    say.say(f"ekd distill: {name}, {teacher} -> {job.student_arch} on {data}")
    if job.teacher is not None:
        say_teacher(say, job.teacher.path, job.teacher.metadata)
    rule = job.distiller.summary().text
    if job.augmentation is not None:
        rule += f"; {job.augmentation.summary().text}"
    say.say(f"  rule: {rule}")
    if plan.rates_note:
        say.say(f"  rates: {plan.rates_note}")
    if config.verbose:
        say.say(f"  loss: {_one_line(job.distiller.describe())}")
        if job.augmentation is not None:
            say.say(f"  augmentation: {_one_line(job.augmentation.describe())}")
    say.say(f"  recipe: {describe_recipe(job.recipe)}")
    say.say(f"  run directory: {run_dir}")


def _report_cache(say: Console, cache: Any, runtime: Runtime) -> None:
    cache.flush()
    share = 100.0 * cache.hits / max(cache.hits + cache.misses, 1)
    where = " on rank 0" if runtime.world_size > 1 else ""
    if runtime.is_main:
        say.say(
            f"  teacher cache: {cache.hits} hits, {cache.misses} misses{where} ({share:.1f}% of clean "
            "views served without the teacher)"
        )


def _report_rule(say: Console, summary: LossSummary) -> None:
    """What setup added to the rule (the energy groups' sizes and thresholds), once; and groups that
    stayed empty."""
    groups = summary.rule.groups if summary.rule is not None else None
    counts = (groups.sizes if groups is not None else None) or {}
    if counts:
        thresholds = (groups.thresholds if groups is not None else None) or {}
        bounds = ", ".join(
            f"E_{k} {thresholds[k]:.4g}"
            for k in ("low", "high")
            if isinstance(thresholds.get(k), (int, float))
        )
        sizes = " / ".join(f"{group} {n:,}" for group, n in counts.items())
        say.say(f"  energy groups of the training images: {sizes}" + (f" ({bounds})" if bounds else ""))
    empty = [group for group, n in counts.items() if n == 0]
    if empty:
        say.warn(
            f"no training sample fell in the {', '.join(empty)} energy group(s), so their temperature was "
            "never used; raise the rate (or lower --segments) to give them members."
        )


def _one_line(described: dict[str, Any]) -> str:
    """``key=value, ...`` of the set values; nested tables (temperatures, thresholds) inline."""
    return ", ".join(f"{k}={_compact(v)}" for k, v in described.items() if v is not None)


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + " ".join(f"{k}:{_compact(v)}" for k, v in value.items() if v is not None) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_compact(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)

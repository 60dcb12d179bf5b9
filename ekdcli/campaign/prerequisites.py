"""What the runs of a campaign need before they start: a trained teacher, and its score file.

``ekd distill`` makes both itself when they are missing (the default pair's teacher is trained,
the training set is scored): in a campaign several runs would then build the same file at once.
So the sweep builds each missing one first, once, with the same command ``ekd distill`` would
use, from the settings of the first run that needs it:

* a teacher: ``ekd train --model TEACHER`` with that run's config and seed (and ``--epochs``
  as ``ekd distill`` gives the default pair's teacher: the run's ``epochs``, else 30); a teacher
  in the store, or given as a ``.safetensors`` file, is used as it is;
* its scores: ``ekd score --teacher TEACHER`` when a run's distiller or augmentation selects by
  energy and the store has no score file for that teacher and data.

Only names, the registry and the store's files are looked at: no data or model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ekdcli.campaign.campaign import Campaign, CampaignRun
from ekdcli.config import Config
from ekdcli.jobs.build import canonical_model, dataset_key, is_registered_model
from ekdcli.jobs.distill import DEFAULT_TEACHER_EPOCHS, check_student_name, plan_methods, resolve_pair
from ekdcli.store import rundir
from ekdcli.store.layout import Store
from ekdcli.util.errors import UsageError


@dataclass
class Prerequisite:
    """A file some runs need, built by one ekd command before them."""

    key: str  # "teacher <data>/<model>" or "scores <data>/<teacher>"
    kind: str  # "teacher" or "scores"
    what: str  # for people
    task: str  # its name among the campaign's tasks (and log file)
    args: list[str]
    ready: bool
    after: str | None = None  # the key of a prerequisite to build first
    users: list[str] = field(default_factory=list)  # ids of the runs that need it


def command_of(config: Config) -> str:
    """``train`` for a config that names a model and no teacher or student, else ``distill``."""
    return "train" if config.model and not config.teacher and not config.student else "distill"


def _common_args(campaign: Campaign, run: CampaignRun) -> list[str]:
    return [
        "--config",
        str(run.config),
        *campaign.set_args(run),
        "--seed",
        str(run.seed),
        "--store",
        str(campaign.dir.store.root),
    ]


def needs_of(campaign: Campaign, run: CampaignRun, config: Config) -> list[Prerequisite]:
    """The teacher and score file ``run`` needs (ready or not); a bad name fails here, before work."""
    if command_of(config) == "train":
        return []
    plan = plan_methods(config)
    teacher_name, student_name, defaulted = resolve_pair(config)
    check_student_name(student_name)
    if not plan.distiller.info.get("needs_teacher", True):
        return []
    store = campaign.dir.store
    data_key = dataset_key(config)
    teacher, label = _teacher(campaign, run, config, store, data_key, (teacher_name, defaulted))
    needs = [teacher] if teacher is not None else []
    if plan.needs_energy:
        path = store.score_path(data_key, label)
        needs.append(
            Prerequisite(
                key=f"scores {data_key}/{label}",
                kind="scores",
                what=f"scores of teacher {label} on {data_key} ({path})",
                task=f"scores-{label}-{data_key}",
                args=["score", *_common_args(campaign, run), "--teacher", teacher_name],
                ready=path.is_file(),
                after=teacher.key if teacher is not None and not teacher.ready else None,
            )
        )
    return needs


def _teacher(
    campaign: Campaign,
    run: CampaignRun,
    config: Config,
    store: Store,
    data_key: str,
    named: tuple[str, bool],
) -> tuple[Prerequisite | None, str]:
    """The teacher's prerequisite (None for a weights file) and the stem its scores are stored under."""
    name, defaulted = named
    if name.endswith(".safetensors"):
        store.require_weights(name, data_key, None, "teacher")
        return None, Path(name).stem
    canonical = canonical_model(name) if is_registered_model(name) else None
    found = store.find_weights(name, data_key, canonical)
    if found is None and canonical is None:
        store.require_weights(name, data_key, None, "teacher")  # not a model ekd can train: say so
    label = found.stem if found is not None else str(canonical)
    run_name = f"{campaign.name}.teacher-{label}-{data_key}"
    run_dir = store.run_dir(run_name)
    if (run_dir / rundir.CHECKPOINT).is_file():  # an interrupted teacher: continue it
        args = ["train", "--resume", str(run_dir)]
    else:
        args = ["train", *_common_args(campaign, run), "--model", name, "--run-name", run_name]
        if defaulted:
            args += ["--epochs", str(config.epochs or DEFAULT_TEACHER_EPOCHS)]
    return (
        Prerequisite(
            key=f"teacher {data_key}/{label}",
            kind="teacher",
            what=f"teacher {label} on {data_key} ({store.model_path(data_key, label)})",
            task=f"teacher-{label}-{data_key}",
            args=args,
            ready=found is not None,
        ),
        label,
    )


def collect(per_run: dict[str, list[Prerequisite]]) -> list[Prerequisite]:
    """One prerequisite per key (the first run's command), with every run that needs it; teachers first."""
    merged: dict[str, Prerequisite] = {}
    for run_id, needs in per_run.items():
        for need in needs:
            merged.setdefault(need.key, need).users.append(run_id)
    return sorted(merged.values(), key=lambda p: p.kind != "teacher")


def check_ready(prerequisite: Prerequisite, store: Store) -> bool:
    """Whether the file now exists (another sweep may have built it meanwhile)."""
    data_key, _, label = prerequisite.key.split(" ", 1)[1].partition("/")
    if prerequisite.kind == "teacher":
        return store.model_path(data_key, label).is_file()
    if prerequisite.kind == "scores":
        return store.score_path(data_key, label).is_file()
    raise UsageError(f"unknown prerequisite kind {prerequisite.kind!r}.")

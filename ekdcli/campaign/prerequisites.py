"""What the runs of a campaign need before they start: a trained teacher, and its score file.

``ekd distill`` makes both itself when they are missing (the default pair's teacher is trained,
the training set is scored): in a campaign several runs would then build the same file at once.
So the sweep builds each missing one first, once, with the same command ``ekd distill`` would
use, from the settings of the first run that needs it:

* a teacher: ``ekd train --model TEACHER`` with the teacher's own recipe: the training recipe of
  its dataset and model (the campaign's ``--teacher-config`` file where one was given), never a
  student's ``lr``, ``batch_size``, ``epochs`` or ``[train]``; the data settings (data, its root
  and options, precision, ...) and the seed are the first user's.  The default pair's teacher gets
  ``epochs`` as ``ekd distill`` gives it (the run's, else 30).  A teacher in the store, or given
  as a ``.safetensors`` file, is used as it is;
* its scores: ``ekd score --teacher TEACHER`` when a run's distiller or augmentation selects by
  energy and the store has no score file for that teacher and data.

Each is built from a config file written into the campaign (``prerequisites/<task>.toml``) just
before it is built, so what it was made with stays on record.  Both cover the training images
every run that needs them reads: all of them if one run reads all, else the largest
``limit_train`` (a score file of the first N images serves every run reading N or fewer).

Only names, the registry and the store's files are looked at: no data or model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ekdcli.campaign.campaign import Campaign, CampaignRun
from ekdcli.config import Config, dumps_toml, read_toml
from ekdcli.jobs.build import canonical_model, dataset_key, is_registered_model
from ekdcli.jobs.plan import plan_methods
from ekdcli.jobs.preparation import DEFAULT_TEACHER_EPOCHS, check_student_name, resolve_pair
from ekdcli.store import rundir
from ekdcli.store.layout import Store
from ekdcli.util.errors import UsageError

# What a prerequisite takes from the run that needs it: the data it reads and how it is computed.
# The training recipe (lr, batch size, epochs, [train]) is never taken from a run: it is a
# student's; a teacher gets its own (the dataset's and model's), or the campaign's teacher config's.
DATA_KEYS = (
    "data", "data_root", "download", "limit_test", "device", "precision",
    "channels_last", "deterministic", "recipe", "energy_temperature",
)  # fmt: skip
TEACHER_RECIPE_KEYS = ("recipe", "epochs", "batch_size", "lr", "train")


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
    settings: dict[str, Any] = field(default_factory=dict)  # its config file (None: resumed as it was)
    config_file: Path | None = None
    limit_train: int | None = None  # the training images it covers (None: all), over all its users
    weights: Path | None = None  # a ready teacher's weights file (its provenance is shown in the plan)

    def coverage(self) -> str:
        """For the plan: which training images it is built on."""
        if self.limit_train is None:
            return "every training image"
        return f"the first {self.limit_train} training images"

    def write_config(self) -> None:
        """Its config file, written just before it is built (covering the images its users read)."""
        if self.config_file is not None:
            from ekdcli.store.atomic import atomic_write_text

            settings = {**self.settings, "limit_train": self.limit_train}
            atomic_write_text(self.config_file, dumps_toml(settings))


def command_of(config: Config) -> str:
    """``train`` for a config that names a model and no teacher or student, else ``distill``."""
    return "train" if config.model and not config.teacher and not config.student else "distill"


def data_settings(config: Config) -> dict[str, Any]:
    """The keys of a run's config that a prerequisite is built on (not its training recipe)."""
    settings: dict[str, Any] = {key: getattr(config, key) for key in DATA_KEYS}
    if config.data_options:
        settings["data_options"] = dict(config.data_options)
    return settings


def teacher_recipe(campaign: Campaign) -> dict[str, Any]:
    """The training recipe of the campaign's ``--teacher-config`` (empty: the teacher model's own)."""
    path = campaign.teacher_config
    if path is None:
        return {}
    values = read_toml(path)
    return {key: values[key] for key in TEACHER_RECIPE_KEYS if key in values}


def _args(campaign: Campaign, command: str, file: Path, run: CampaignRun, *extra: str) -> list[str]:
    store = str(campaign.dir.store.root)
    return [command, "--config", str(file), *extra, "--seed", str(run.seed), "--store", store]


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
        task = f"scores-{label}-{data_key}"
        file = campaign.dir.path / "prerequisites" / f"{task}.toml"
        needs.append(
            Prerequisite(
                key=f"scores {data_key}/{label}",
                kind="scores",
                what=f"scores of teacher {label} on {data_key} ({path})",
                task=task,
                args=_args(campaign, "score", file, run, "--teacher", teacher_name),
                ready=path.is_file(),
                after=teacher.key if teacher is not None and not teacher.ready else None,
                settings=data_settings(config),
                config_file=file,
                limit_train=config.limit_train,
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
    task = f"teacher-{label}-{data_key}"
    file = campaign.dir.path / "prerequisites" / f"{task}.toml"
    settings = {**data_settings(config), **teacher_recipe(campaign)}
    if defaulted and "epochs" not in settings:  # as ekd distill trains the default pair's teacher
        settings["epochs"] = config.epochs or DEFAULT_TEACHER_EPOCHS
    resumed = (run_dir / rundir.CHECKPOINT).is_file()  # an interrupted teacher: continue it as it was
    args = (
        ["train", "--resume", str(run_dir)]
        if resumed
        else _args(campaign, "train", file, run, "--model", name, "--run-name", run_name)
    )
    return (
        Prerequisite(
            key=f"teacher {data_key}/{label}",
            kind="teacher",
            what=f"teacher {label} on {data_key} ({store.model_path(data_key, label)})",
            task=task,
            args=args,
            ready=found is not None,
            settings=settings,
            weights=found,
            config_file=None if resumed else file,
            limit_train=config.limit_train,
        ),
        label,
    )


def collect(per_run: dict[str, list[Prerequisite]]) -> list[Prerequisite]:
    """One prerequisite per key (the first run's command), with every run that needs it; teachers first."""
    merged: dict[str, Prerequisite] = {}
    for run_id, needs in per_run.items():
        for need in needs:
            first = merged.setdefault(need.key, need)
            first.users.append(run_id)
            first.limit_train = _union(first.limit_train, need.limit_train)
    return sorted(merged.values(), key=lambda p: p.kind != "teacher")


def _union(a: int | None, b: int | None) -> int | None:
    """The first ``limit_train`` images that cover both (None: every image)."""
    return None if a is None or b is None else max(a, b)


def check_ready(prerequisite: Prerequisite, store: Store) -> bool:
    """Whether the file now exists (another sweep may have built it meanwhile)."""
    data_key, _, label = prerequisite.key.split(" ", 1)[1].partition("/")
    if prerequisite.kind == "teacher":
        return store.model_path(data_key, label).is_file()
    if prerequisite.kind == "scores":
        return store.score_path(data_key, label).is_file()
    raise UsageError(f"unknown prerequisite kind {prerequisite.kind!r}.")

"""Pieces every job needs: the store, the engine options and the training recipe of a Config."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.config import Config, naming_origin, resolve, train_problems
from ekdcli.jobs.console import Console
from ekdcli.sdk.plugins import registry
from ekdcli.store import rundir
from ekdcli.store.layout import Store
from ekdcli.store.locks import FileLock, lock_for
from ekdcli.store.weights import meta_value, read_metadata
from ekdcli.util.errors import UsageError, did_you_mean

if TYPE_CHECKING:
    from ekdcli.engine import EngineOptions, Recipe
    from ekdcli.sdk.contracts import Dataset


def open_store(config: Config) -> Store:
    return Store(config.store_root())


def check_output(config: Config, path: Path | None, option: str = "--out") -> None:
    """Refuse an output path that names a file (or folder) the store owns, ``--force`` or not."""
    if path is None:
        return
    store = open_store(config)
    if store.owns(path):
        raise UsageError(
            f"{option} {path} is inside the store's own files ({store.root}: models, scores, cache, runs, "
            f"campaigns), which only ekd writes; choose a path outside them."
        )


def store_file_lock(path: Path, hint: str = "", wait: float = 0.0) -> FileLock:
    """The lock its writer holds on a store file (weights, scores) while it makes it."""
    return FileLock(lock_for(path), str(path), wait=wait, hint=hint)


def hold_run(
    held: contextlib.ExitStack, store: Store, run_name: str | None, prefix: str, resume: Path | None,
    *locks: FileLock,
) -> Path:  # fmt: skip
    """Rank 0 (the writer) takes ``locks`` and claims the run directory until ``held`` closes; every
    rank gets the directory, or rank 0's refusal naming the process that holds it."""
    from ekdcli.engine.ddp import from_rank0

    def claim() -> Path:
        for lock in locks:
            held.enter_context(lock)
        return held.enter_context(store.claim_run(run_name, prefix, resume)).path

    return from_rank0(claim)


# What --resume may change without changing the experiment: how long it trains (the engine checks
# that the schedule allows it), where it runs, who watches it and what it prints.
RESUME_MAY_CHANGE = frozenset(
    {"epochs", "train.epochs", "device", "track", "tracking_uri", "quiet", "verbose", "debug", "json"}
)


def check_resume(config: Config, resume: Path) -> None:
    """Refuse, before any work, a ``--resume`` of something that is not a run, of a run without its
    ``config.toml``, or one that would change the run's experiment (naming the option)."""
    has_checkpoint = (resume / rundir.CHECKPOINT).is_file()
    if not has_checkpoint and not rundir.is_run_dir(resume):
        raise UsageError(
            f"{resume} holds no {rundir.CHECKPOINT}, so there is nothing to resume (it is not a run directory); pass the "
            "directory of a stopped run, or start a new run without --resume."
        )
    if not (resume / rundir.CONFIG).is_file():
        raise UsageError(
            f"{resume} has no {rundir.CONFIG}, so how the run was started is unknown and it cannot be "
            "resumed; start a new run."
        )
    rundir.read_config(resume)  # a config.toml that is not TOML is said as such
    recorded = _flat(_as_recorded(resolve(config_file=resume / rundir.CONFIG)))
    current = _flat(_as_recorded(config))
    if current.get("precision") == _ran_at(resume):  # the precision "auto" resolved to (ekd sweep passes it)
        current["precision"] = recorded.get("precision")
    changed = [
        key
        for key in sorted(set(recorded) | set(current))
        if key not in RESUME_MAY_CHANGE and _normal(key, recorded.get(key)) != _normal(key, current.get(key))
    ]
    if changed:
        key = changed[0]
        raise UsageError(
            f"--resume continues a run as it was started, so it cannot change {_option(key)} "
            f"({_shown(recorded.get(key))} -> {_shown(current.get(key))}); drop it, or start a new run "
            "(a resume may change only --epochs, --device and the trackers)."
        )


def _ran_at(run_dir: Path) -> str | None:
    """The precision a run trained at, as its ``environment.json`` records it (None if unknown)."""
    try:
        value = json.loads((run_dir / rundir.ENVIRONMENT).read_text(encoding="utf-8")).get("precision")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _as_recorded(config: Config) -> dict[str, Any]:
    """The config as its run's config.toml would record it (absolute store, no unset values)."""
    return {k: v for k, v in recorded_config(config, open_store(config)).as_dict().items() if v is not None}


def _flat(table: dict[str, Any]) -> dict[str, Any]:
    """``{"energy": {"segments": 5}}`` as ``{"energy.segments": 5}`` (one level, as Config has)."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update({f"{key}.{sub}": v for sub, v in value.items()})
        else:
            out[key] = value
    return out


def _normal(key: str, value: Any) -> Any:
    if key in ("store", "data_root") and isinstance(value, str):
        return str(Path(value).expanduser().resolve())
    return list(value) if isinstance(value, tuple) else value


def _option(key: str) -> str:
    return f"--set {key}" if "." in key else f"--{key.replace('_', '-')}"


def _shown(value: Any) -> str:
    return "unset" if value is None else repr(value)


def replacing_note(path: Path) -> str:
    """What writing a store file replaces: its accuracy and where it came from."""
    previous = read_metadata(path)
    top1 = meta_value(previous, "top1")
    if isinstance(top1, (int, float)) and top1 > 1:  # files written before accuracies became fractions
        top1 = top1 / 100
    accuracy = f"top-1 {100 * top1:.2f}%" if isinstance(top1, (int, float)) else "no recorded accuracy"
    origin = meta_value(previous, "run_dir") or meta_value(previous, "source") or "elsewhere"
    return f"replacing {path} ({accuracy}, from {origin})"


def recorded_config(config: Config, store: Store) -> Config:
    """The config as a run directory records it: the store and a local data root as absolute
    paths, so that ``--resume`` from another directory (or without ``EKD_HOME``) finds the same
    store (weights, teacher, scores) and data."""
    changes: dict[str, Any] = {"store": str(Path(store.root).resolve())}
    if config.data_root and Path(config.data_root).exists():
        changes["data_root"] = str(Path(config.data_root).resolve())
    return dataclasses.replace(config, **changes)


def console(config: Config) -> Console:
    return Console(quiet=config.quiet, json_mode=config.json)


def engine_options(config: Config) -> EngineOptions:
    from ekdcli.engine import EngineOptions

    return EngineOptions(
        device=config.device,
        precision=config.precision,
        channels_last=config.channels_last,
        compile=config.compile,
        seed=config.seed,
        deterministic=config.deterministic,
        limit_train=config.limit_train,
        limit_test=config.limit_test,
        quiet=config.quiet or config.json,
    )


def recipe_name(config: Config, dataset: Dataset) -> str:
    """``auto`` picks the recipe the dataset suggests (its ``info["recipe"]``), else ``cifar``."""
    if config.recipe != "auto":
        return config.recipe
    hint = dataset.info.get("recipe") or registry("datasets").get(config.data).info.get("recipe")
    return str(hint or "cifar")


def resolve_recipe(config: Config, dataset: Dataset, model: str | None = None) -> Recipe:
    """The named recipe for ``model`` (the model being trained: a registered name, or a weights
    file, which changes nothing), then the ``[train]`` table, then ``--epochs/--batch-size/--lr``."""
    from ekdcli.engine.recipe import RECIPES, preset, scale_milestones
    from ekdcli.jobs.build import is_registered_model

    name = recipe_name(config, dataset)
    if name not in RECIPES:
        raise UsageError(
            f"unknown recipe {name!r}.{did_you_mean(name, RECIPES)} Choose one of {', '.join(RECIPES)}."
        )
    hints = (
        registry("models").get(model).info.get("recipe_lr") if model and is_registered_model(model) else None
    )
    recipe = preset(name, hints)
    with naming_origin(config, "train"):
        problems = train_problems(config.train)  # a Config built in Python; the CLI checked it already
        if problems:
            raise UsageError(f"the [train] table: {'; '.join(problems)}.")
        overrides: dict[str, Any] = dict(config.train)
        for key in ("epochs", "batch_size", "lr"):
            if getattr(config, key) is not None:
                overrides[key] = getattr(config, key)
        if "milestones" in overrides:
            overrides["milestones"] = tuple(overrides["milestones"])
        elif overrides.get("epochs", recipe.epochs) != recipe.epochs:  # the schedule follows the run's length
            overrides["milestones"] = scale_milestones(recipe, int(overrides["epochs"]))
            # recorded in the run's config.toml, so a resumed (or extended) run keeps this schedule
            config.train["milestones"] = list(overrides["milestones"])
            config.sources["train.milestones"] = f"scaled with epochs {overrides['epochs']}"
        return dataclasses.replace(recipe, **overrides).validate()


def describe_data(config: Config, dataset: Dataset, data_key: str) -> str:
    """``cifar100`` with what a reader would otherwise not know: that it was recognized from the
    data root, and how many of its training images are used (``--limit-train``)."""
    total = len(dataset.labels("train"))
    used = min(config.limit_train, total) if config.limit_train is not None else total
    notes = []
    if config.sources.get("data", "").startswith("recognized"):
        notes.append(f"recognized from {config.data_root}")
    notes.append(
        f"the first {used:,} of {total:,} training images" if used < total else f"{total:,} training images"
    )
    return f"{data_key} ({'; '.join(notes)})"


def describe_recipe(recipe: Recipe) -> str:
    milestones = ",".join(str(m) for m in recipe.milestones)
    return (
        f"{recipe.epochs} epoch{'s' if recipe.epochs != 1 else ''}, batch {recipe.batch_size}, "
        + (
            f"AdamW lr {recipe.lr} "
            if recipe.optimizer == "adamw"
            else f"SGD lr {recipe.lr} momentum {recipe.momentum} "
        )
        + f"wd {recipe.weight_decay}, {recipe.schedule} schedule"
        + (f" (warm-up {recipe.warmup_epochs:g} epochs)" if recipe.warmup_epochs else "")
        + (f" (x{recipe.gamma} at {milestones})" if recipe.schedule == "step" else "")
        + (f", EMA of the weights (decay {recipe.ema:g})" if recipe.ema else "")
    )

"""What ``ekd sweep`` prints under its plan besides the runs: the estimated training time of the runs
to do (:func:`ekdcli.jobs.cost.estimate`, from the speeds the store's runs recorded) and, for each
teacher already in the store, where it comes from (:func:`ekdcli.jobs.provenance.teacher_report`)."""

from __future__ import annotations

from typing import Any, cast

from ekdcli.campaign.campaign import Campaign, CampaignRun
from ekdcli.campaign.prerequisites import Prerequisite
from ekdcli.config import Config
from ekdcli.jobs.common import recipe_name
from ekdcli.jobs.provenance import teacher_report
from ekdcli.sdk.plugins import registry
from ekdcli.store import rundir
from ekdcli.store.layout import Store


def train_images(config: Config) -> int | None:
    """The training images a run reads: its ``limit_train``, capped by the dataset's size where the
    dataset plugin states it (``info["train"]``); None when neither is known before loading the data."""
    total = registry("datasets").get(config.data).info.get("train")
    size = total if isinstance(total, int) and not isinstance(total, bool) else None
    if config.limit_train is None:
        return size
    return config.limit_train if size is None else min(config.limit_train, size)


def planned_epochs(config: Config) -> int:
    """The epochs a run trains: ``--epochs``, else its ``[train]`` table's, else its recipe's."""
    from ekdcli.engine.recipe import RECIPES  # the engine package imports torch: not at start-up

    if config.epochs is not None:
        return config.epochs
    if isinstance(config.train.get("epochs"), int):
        return int(config.train["epochs"])
    component = registry("datasets").get(config.data)  # recipe_name reads only its info
    recipe = RECIPES.get(recipe_name(config, cast(Any, component)))
    return recipe.epochs if recipe is not None else 0


def cost_line(store: Store, campaign: Campaign, todo: list[tuple[CampaignRun, str]], jobs: int) -> str:
    """One line: the training time of the runs to start or resume (``(run, action)``) at recorded speeds."""
    from ekdcli.jobs.cost import PlannedRun, estimate  # engine.progress imports torch: not at start-up

    planned: list[PlannedRun] = []
    unsized: list[str] = []
    for run, action in todo:
        config = campaign.config_of(run)
        images = train_images(config)
        if images is None:
            unsized.append(str(config.data))
            continue
        epochs = planned_epochs(config)
        if action == "resume":
            epochs -= int(rundir.history(campaign.dir.run_dir(run.id)).get("epochs_done") or 0)
        arch = config.student or config.model or ""
        planned.append(PlannedRun(arch, str(config.data), max(epochs, 0), images))
    parts = [estimate(store, planned, jobs)] if planned else []
    if unsized:
        parts.append(
            f"{len(unsized)} run(s) on {', '.join(sorted(set(unsized)))} not estimated (the dataset states "
            "no training size; a limit_train would give one)"
        )
    return "; ".join(parts)


def teacher_lines(need: Prerequisite) -> list[str]:
    """A ready teacher's provenance line, and its warning when it looks untrained (else nothing)."""
    if need.kind != "teacher" or not need.ready or need.weights is None:
        return []
    line, warning = teacher_report(need.weights)
    return [f"    teacher: {line}"] + ([f"    WARNING: {warning}"] if warning is not None else [])

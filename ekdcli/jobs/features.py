"""Feature-based distillers in ``ekd distill``: the refusals made from registry info (no torch), and
the binding of the distiller to the run's models once they exist.

Refusals come before any data, model or file is touched: a model that does not provide what the
method reads, ``--teacher-cache`` (it holds logits only), and a single-process method (CRD's
memory bank) under several processes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ekdcli.sdk.plugins import Component, registry
from ekdcli.util.errors import UsageError

if TYPE_CHECKING:
    import torch

    from ekdcli.config import Config
    from ekdcli.jobs.build import TrainedModel
    from ekdcli.sdk.contracts import Dataset, Distiller


def is_feature_method(distiller: Component) -> bool:
    """Whether a registered distiller reads features or model hooks (``info["kind"] == "feature"``)."""
    info = distiller.info
    return info.get("kind") == "feature" or bool(info.get("features") or info.get("model_hooks"))


def world_size_of(nproc: int | None = None) -> int:
    """The processes the run will have: ``--nproc`` before the launch, ``WORLD_SIZE`` under torchrun."""
    if nproc is not None:
        return nproc
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def check_processes(distiller: Component, world_size: int) -> None:
    """Refuse a method that keeps per-process state it cannot share (``info["single_process"]``)."""
    if world_size > 1 and distiller.info.get("single_process"):
        raise UsageError(
            f"method {distiller.name!r} runs in one process only (its state, such as a memory bank of the "
            f"training set, is not shared between processes), but {world_size} were asked for; drop --nproc."
        )


def check_feature_run(
    config: Config, distiller: Component, models: dict[str, str], nproc: int | None = None
) -> None:
    """Every refusal of a feature method that registry info and the config can decide.

    ``models`` maps a role (``student``, ``teacher``) to the name given; names that are not
    registered models (weights files) are checked by :func:`check_models` once their architecture
    is read.
    """
    check_processes(distiller, world_size_of(nproc))
    if not is_feature_method(distiller):
        return
    if config.teacher_cache:
        raise UsageError(
            f"method {distiller.name!r} reads the teacher's intermediate features, but the teacher cache holds "
            "logits only; drop --teacher-cache for this method."
        )
    known = registry("models")
    check_models(distiller, {role: name for role, name in models.items() if name in known})


def check_models(distiller: Component, models: dict[str, str]) -> None:
    """Refuse a student or teacher whose registry info lacks a feature kind or hook the method reads."""
    needs = {
        "features": _listed(distiller.info, "features"),
        "model_hooks": _listed(distiller.info, "model_hooks"),
    }
    for role, name in models.items():
        if role == "teacher" and not distiller.info.get("needs_teacher", True):
            continue
        model = registry("models").get(name)
        missing = [
            item for key, wanted in needs.items() for item in wanted if item not in _listed(model.info, key)
        ]
        if missing:
            raise UsageError(
                f"method {distiller.name!r} needs {', '.join(missing)} from the {role}, which model "
                f"{model.name!r} does not provide; pick a {role} whose 'ekd list models' entry lists them."
            )


def _listed(info: dict[str, Any], key: str) -> list[str]:
    value = info.get(key) or []
    return [str(item) for item in value] if isinstance(value, (list, tuple)) else []


def bind(
    config: Config,
    component: Component,
    distiller: Distiller,
    student: tuple[torch.nn.Module, str],
    teacher: TrainedModel | None,
    dataset: Dataset,
    world_size: int,
) -> None:
    """Check the models' architectures (weights files name theirs only now), then ``distiller.bind``
    with the run's pair and the training samples it uses (``--limit-train``)."""
    from ekdcli.method.features import bind_distiller, pair_context

    if is_feature_method(component):
        check_models(component, {"student": student[1], **({"teacher": teacher.arch} if teacher else {})})
    models = (student[0], teacher.model if teacher else None)
    names = (student[1], teacher.arch if teacher else None)
    bind_distiller(distiller, pair_context(*models, names, dataset, config.limit_train, world_size))

"""Feature-based distillers on the engine: forward passes that also return features, and binding.

A distiller whose ``features`` name any of :data:`~ekdcli.sdk.contracts.FEATURE_KINDS` gets the
intermediate tensors of the same forward passes that give the logits (``model(x,
return_features=True)``); a logit distiller's passes stay ``model(x)``, unchanged.
:func:`bind_distiller` hands a distiller its :class:`~ekdcli.sdk.contracts.PairContext` once,
before training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ekdcli.sdk.contracts import Features, PairContext
from ekdcli.util.errors import JobError

if TYPE_CHECKING:
    from ekdcli.sdk.contracts import Dataset, Distiller


def forward(
    module: torch.nn.Module, images: torch.Tensor, kinds: tuple[str, ...]
) -> tuple[Any, Features | None]:
    """``module(images)`` and, when ``kinds`` is not empty, the features of that same pass."""
    if not kinds:
        return module(images), None
    output = module(images, return_features=True)
    if not (isinstance(output, (tuple, list)) and len(output) == 2 and isinstance(output[1], dict)):
        raise JobError(
            f"the model {type(module).__name__} returned no features (forward(x, return_features=True) must "
            "give (logits, {'feats': ..., 'preact_feats': ..., 'pooled_feat': ...})); pick a model that does."
        )
    return output[0], as_features(output[1], kinds, type(module).__name__)


def as_features(raw: dict[str, Any], kinds: tuple[str, ...], model: str = "model") -> Features:
    """The model's feature dict as :class:`Features`; kinds nobody reads may be absent (empty / None)."""
    missing = [kind for kind in kinds if raw.get(kind) is None]
    if missing:
        raise JobError(
            f"the model {model} returned no {', '.join(repr(k) for k in missing)} features, which the "
            "method reads; pick a model whose registry info lists them ('ekd list models')."
        )
    pooled = raw.get("pooled_feat")
    return Features(list(raw.get("feats") or []), list(raw.get("preact_feats") or []), pooled)  # type: ignore[arg-type]


def feature_rows(features: Features | None, rows: torch.Tensor | None) -> Features | None:
    """``features`` of the batch rows ``rows`` only (all when None); an absent pooled feature stays None."""
    if features is None or rows is None:
        return features
    pooled = features.pooled_feat
    return Features(
        [f[rows] for f in features.feats],
        [f[rows] for f in features.preact_feats],
        pooled[rows] if pooled is not None else pooled,
    )


def pair_context(
    student: torch.nn.Module,
    teacher: torch.nn.Module | None,
    names: tuple[str, str | None],
    dataset: Dataset,
    limit_train: int | None,
    world_size: int,
) -> PairContext:
    """The run's pair and the training samples it uses: the first ``limit_train`` of the split, as
    the engine's batches take them (``ekdcli.engine.pipeline.make_batches``)."""
    labels = dataset.labels("train")
    labels = labels if isinstance(labels, torch.Tensor) else torch.tensor(list(labels), dtype=torch.int64)
    size = len(labels) if limit_train is None else min(len(labels), limit_train)
    return PairContext(
        student=student,
        teacher=teacher,
        student_name=names[0],
        teacher_name=names[1],
        num_classes=dataset.num_classes,
        in_channels=int(dataset.in_channels),
        image_size=tuple(dataset.image_size),  # type: ignore[arg-type]
        train_size=size,
        train_labels=labels[:size].to(torch.int64).cpu(),
        world_size=world_size,
    )


def bind_distiller(distiller: Distiller, pair: PairContext) -> None:
    """``distiller.bind(pair)`` with both models in eval mode and without gradients, so a probing
    forward pass leaves the student's batch-norm statistics as they were; modes restored after."""
    models = [m for m in (pair.student, pair.teacher) if m is not None]
    modes = [m.training for m in models]
    for model in models:
        model.eval()
    try:
        with torch.no_grad():
            distiller.bind(pair)
    finally:
        for model, mode in zip(models, modes, strict=True):
            model.train(mode)

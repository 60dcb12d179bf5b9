"""What VID, OFD, CRD and ReviewKD share: probing feature shapes, reading a batch's features, CE,
and mdistiller's per-pair values."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ekd_plugins.distillers.feature.options_modules import MDISTILLER_PAIRS
from ekd_plugins.pairs import normalize_model_name
from ekdcli.sdk.contracts import DistillBatch, Features, PairContext
from ekdcli.sdk.errors import JobError
from ekdcli.sdk.losses import upcast


def _probe_one(model: torch.nn.Module, pair: PairContext) -> Features:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            image = torch.zeros(1, pair.in_channels, *pair.image_size)
            _, feats = model(image, return_features=True)
    finally:
        model.train(was_training)
    if isinstance(feats, Features):
        return feats
    return Features(
        list(feats.get("feats") or []), list(feats.get("preact_feats") or []), feats.get("pooled_feat")
    )


def probe_features(pair: PairContext, method: str) -> tuple[Features, Features]:
    """The student's and the teacher's features of one blank image at ``pair.image_size``.

    mdistiller probes with a random image in train mode, which moves both models' batch-norm
    running statistics (the trained teacher's too); here both run in eval mode under no_grad
    and get their modes back, so binding changes neither model.
    """
    if pair.teacher is None:
        raise JobError(f"distiller {method!r} needs a teacher; run it with a --teacher.")
    return _probe_one(pair.student, pair), _probe_one(pair.teacher, pair)


def require(features: Features, kind: str, role: str, name: str | None, method: str) -> None:
    """Refuse a model whose forward pass gave none of a feature kind the method reads from it."""
    value = getattr(features, kind)
    if value is None or (isinstance(value, list) and len(value) < 2):
        raise JobError(
            f"distiller {method!r} reads the {role}'s {kind!r}, which model {name or '?'} does not return; "
            f"pick a {role} whose 'ekd list models' entry lists it."
        )


def batch_features(batch: DistillBatch, method: str) -> tuple[Features, Features]:
    """The student's and teacher's features of the batch (refused when the engine gave none)."""
    if batch.student_features is None or batch.teacher_features is None:
        raise JobError(f"distiller {method!r} got no intermediate features; its models must return them.")
    return batch.student_features, batch.teacher_features


def floats(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Low-precision features to float32 (float64 stays float64)."""
    return [upcast(t) for t in tensors]


def cross_entropy(batch: DistillBatch) -> torch.Tensor:
    return F.cross_entropy(upcast(batch.student_logits), batch.labels.long())


def pair_values(method: str, teacher: str | None, student: str) -> dict[str, Any]:
    """mdistiller's hand-written values of ``method`` for this (teacher, student) pair, else {}."""
    if teacher is None:
        return {}
    wanted = (normalize_model_name(teacher), normalize_model_name(student))
    for (t, s), methods in MDISTILLER_PAIRS.items():
        if (normalize_model_name(t), normalize_model_name(s)) == wanted:
            return dict(methods.get(method, {}))
    return {}

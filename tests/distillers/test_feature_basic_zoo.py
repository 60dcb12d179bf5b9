"""FitNet, AT, PKT, RKD, SP, NST and KDSVD bound to ekd's zoo models: one loss forward and backward.

The pairs are mdistiller's CIFAR-100 pairs resnet32x4 -> resnet8x4, vgg13 -> mobilenetv2 and
wrn_40_2 -> shufflev1 (KDSVD needs equally wide maps at every stage: only the first pair).
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import ekd_plugins.models as zoo
import pytest
import torch
from ekd_plugins.distillers import distiller_table

from ekdcli.sdk.contracts import DistillBatch, Features, PairContext
from ekdcli.sdk.errors import UsageError

MODELS = {name: factory for name, factory, _aliases, _text, _info in zoo.model_table()}
DISTILLERS = {name: factory for name, factory, _aliases, _text, _info in distiller_table()}
PAIRS = [("resnet32x4", "resnet8x4"), ("vgg13", "mobilenetv2"), ("wrn_40_2", "shufflev1")]
METHODS = ("fitnet", "at", "pkt", "rkd", "sp", "nst", "kdsvd")


def load(table: dict[str, str], name: str, **kwargs: Any) -> Any:
    module, attr = table[name].split(":")
    return getattr(importlib.import_module(module), attr)(**kwargs)


def models(teacher: str, student: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    return load(MODELS, teacher, num_classes=100).eval(), load(MODELS, student, num_classes=100).train()


def pair(
    teacher_model: torch.nn.Module, student_model: torch.nn.Module, teacher: str, student: str
) -> PairContext:
    return PairContext(
        student_model, teacher_model, student, teacher, 100, 3, (32, 32), 2, torch.zeros(2, dtype=torch.long)
    )


@pytest.mark.slow
@pytest.mark.parametrize(("teacher", "student"), PAIRS)
def test_every_method_binds_and_trains_on_the_zoo(teacher: str, student: str) -> None:
    t_model, s_model = models(teacher, student)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([3, 7])
    with torch.no_grad():
        t_logits, t_raw = t_model(images, return_features=True)
    for method in METHODS:
        distiller = load(DISTILLERS, method)
        if method == "kdsvd" and teacher != "resnet32x4":
            with pytest.raises(UsageError, match="kdsvd compares singular vectors of equally wide maps"):
                distiller.bind(pair(t_model, s_model, teacher, student))
            continue
        distiller.bind(pair(t_model, s_model, teacher, student))
        assert s_model.training and not t_model.training
        distiller.to(torch.device("cpu"))
        s_model.zero_grad()
        s_logits, s_raw = s_model(images, return_features=True)
        batch = DistillBatch(
            s_logits, t_logits, labels, torch.arange(2), 1,
            student_features=Features(s_raw["feats"], s_raw["preact_feats"], s_raw["pooled_feat"]),
            teacher_features=Features(t_raw["feats"], t_raw["preact_feats"], t_raw["pooled_feat"]),
        )  # fmt: skip
        losses = distiller(batch)
        assert sorted(losses) == ["loss_ce", "loss_feat"], method
        total = losses["loss_ce"] + losses["loss_feat"]
        assert math.isfinite(float(total.detach())), method
        total.backward()
        grads = [p.grad for p in s_model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), method
        for p in distiller.parameters():  # FitNet's regressor learns with the student
            assert p.grad is not None and torch.isfinite(p.grad).all(), method

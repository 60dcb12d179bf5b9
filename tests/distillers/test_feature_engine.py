"""The engine side of feature distillers: features of the same passes, rows, binding, refusals, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import feature_kit as kit
from ekdcli.engine import Batch
from ekdcli.engine.options import EngineOptions
from ekdcli.engine.runtime import Runtime
from ekdcli.method.features import bind_distiller, pair_context
from ekdcli.method.objective import DistillObjective
from ekdcli.sdk.contracts import EnergyContext
from ekdcli.sdk.energy import energy
from ekdcli.sdk.plugins import registry, reset_plugins

HERE = Path(__file__).resolve().parent
TINY = ("--data", "fake", "--limit-train", "64", "--limit-test", "32", "--batch-size", "16")
QUICK = (*TINY, "--device", "cpu", "--precision", "fp32", "--quiet")


@pytest.fixture
def registered() -> Iterator[None]:
    kit.register()
    kit.Probe.seen.clear()
    yield
    reset_plugins()


def _pair(train: int = 40) -> tuple[kit.FeatNet, kit.FeatNet, kit.Probe]:
    torch.manual_seed(0)
    teacher, student = kit.FeatNet(width=8), kit.FeatNet(width=6)
    probe = kit.Probe()
    labels = torch.arange(train) % 10

    class Data:
        num_classes, in_channels, image_size = 10, 3, (8, 8)

        def labels(self, split: str) -> torch.Tensor:
            return labels

    bind_distiller(probe, pair_context(student, teacher, ("s", "t"), Data(), None, 1))  # type: ignore[arg-type]
    return teacher, student, probe


def _batch(rows: int = 12, train: int = 40) -> Batch:
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(rows, 3, 8, 8, generator=gen)
    indices = torch.randperm(train, generator=gen)[:rows]
    return Batch(images, indices % 10, indices)


def _objective(augment: str | None, options: dict[str, Any], train: int = 40) -> tuple[Any, ...]:
    teacher, student, probe = _pair(train)
    aug = registry("augmentations").get(augment).build(**options) if augment else None
    with torch.no_grad():  # energies spread like the teacher's own (online selection compares them)
        energies = energy(teacher(_batch(train, train).images), 1.0)
    context = EnergyContext(energies, 1.0, "test") if aug is not None and aug.needs_energy else None
    objective = DistillObjective(teacher, probe, aug, context)
    objective.setup(Runtime(EngineOptions(device="cpu", precision="fp32")), 2)
    return objective, teacher, student, probe


def test_plain_step_gives_the_features_of_the_same_passes(registered: None) -> None:
    objective, teacher, student, probe = _objective(None, {})
    batch = _batch()
    student.train()
    out = objective(student, batch, 1, torch.Generator().manual_seed(0))
    (seen,) = kit.Probe.seen
    assert seen["rows"] == 12 and seen["student_rows"] == [12, 12, 12] and seen["pooled_rows"] == 12
    with torch.no_grad():
        logits, feats = teacher(batch.images, return_features=True)
    assert not teacher.training and seen["training"]  # teacher eval, the method's modules train
    assert torch.equal(seen["teacher_logits"], logits)
    assert all(torch.equal(a, b) for a, b in zip(seen["teacher_feats"], feats["feats"], strict=True))
    assert set(out.losses) == {"loss_ce", "loss_feat"} and out.logits is not None
    assert int(probe.modules.steps) == 1  # type: ignore[union-attr]
    assert [p.shape for p in objective.parameters()] == [torch.Size([16, 12, 1, 1])]  # the connector only


@pytest.mark.parametrize(
    ("augment", "options"),
    [
        ("he-cutmix", {"rate": 0.5, "mode": "extra"}),
        ("he-cutmix", {"rate": 0.5, "mode": "replace"}),
        ("he-cutmix", {"rate": 0.5, "mode": "replace", "source": "online"}),
        ("he-cutmix", {"rate": 0.5, "mode": "extra", "source": "online"}),
        ("he-mixup", {"rate": 0.5, "mode": "replace"}),
        ("cutmix", {"rate": 0.5, "mode": "extra"}),
        ("cutmix", {"rate": 0.5, "mode": "replace"}),
    ],
)
def test_mixed_steps_give_the_clean_rows_features(registered: None, augment: str, options: dict[str, Any]) -> None:
    objective, teacher, student, _ = _objective(augment, options)
    batch = _batch(40)  # the whole training set: online selection takes its high-energy half
    student.train()
    out = objective(student, batch, 1, torch.Generator().manual_seed(3))
    (seen,) = kit.Probe.seen
    mixed = int(out.stats["augmented"])
    assert 0 < mixed < 40
    clean = 40 if options["mode"] == "extra" else 40 - mixed
    assert seen["rows"] == clean and seen["student_rows"] == [clean] * 3 and seen["pooled_rows"] == clean
    assert seen["teacher_rows"] == [clean] * 3
    rows = [int((batch.indices == i).nonzero()) for i in seen["indices"]]  # the clean rows, in batch order
    with torch.no_grad():
        logits, feats = teacher(batch.images[rows], return_features=True)
    assert torch.allclose(seen["teacher_logits"], logits, atol=1e-6)
    for got, want in zip(seen["teacher_feats"], feats["feats"], strict=True):
        assert torch.allclose(got, want, atol=1e-6)
    assert {"loss_ce", "loss_feat"} <= set(out.losses) and len(out.losses) > 2  # + the mixed rows' loss


def test_pair_context_counts_the_samples_the_run_uses() -> None:
    class Data:
        num_classes, in_channels, image_size = 3, 1, (5, 7)

        def labels(self, split: str) -> list[int]:
            return [2, 0, 1, 1, 0]

    pair = pair_context(torch.nn.Linear(1, 1), None, ("s", None), Data(), 3, 2)  # type: ignore[arg-type]
    assert (pair.train_size, pair.image_size, pair.world_size) == (3, (5, 7), 2)
    assert pair.train_labels.tolist() == [2, 0, 1] and pair.train_labels.dtype == torch.int64
    assert pair_context(torch.nn.Linear(1, 1), None, ("s", None), Data(), 99, 1).train_size == 5  # type: ignore[arg-type]


def test_bind_leaves_the_students_batch_norm_statistics_alone(registered: None) -> None:
    teacher, student, _ = _pair()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    student.train()
    bind_distiller(kit.Probe(), pair_context(student, teacher, ("s", "t"), _data(), None, 1))
    assert student.training  # its mode is given back
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())


def _data() -> Any:
    class Data:
        num_classes, in_channels, image_size = 10, 3, (8, 8)

        def labels(self, split: str) -> torch.Tensor:
            return torch.arange(40) % 10

    return Data()

"""Seeded inputs of the VID / OFD / CRD / ReviewKD equality tests, shared with the script that ran
mdistiller on them (see tests/distillers/test_feature_modules.py).

Everything is float64 and drawn from generators seeded here: the features of resnet32x4 (teacher)
and resnet8x4 (student) at 32x32 for a batch of 8, the logits and labels, the teacher's batch norms
before the ReLUs (OFD's margins), and the values every floating entry of a module's state dict is
overwritten with (so that the module's own initialisation is not part of the comparison).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

BATCH, CLASSES, TRAIN_SIZE, TRAIN_CLASSES, NCE_K, EPOCH = 8, 100, 200, 10, 64, 5
# resnet8x4 and resnet32x4 at 32x32: the stem, then three stages; pooled 256.
STAGES = [(32, 32), (64, 32), (128, 16), (256, 8)]
POOLED = 256


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float64)


def features(seed: int) -> dict[str, Any]:
    """``{"feats", "preact_feats", "pooled_feat"}`` of a batch; feats are the ReLU of preact_feats,
    the stem is its own pre-activation (as in the CIFAR ResNets)."""
    preact = [randn(seed + i, BATCH, c, s, s) for i, (c, s) in enumerate(STAGES)]
    feats = [preact[0].clone(), *(p.relu() for p in preact[1:])]
    return {"feats": feats, "preact_feats": preact, "pooled_feat": feats[-1].mean(dim=(2, 3))}


def leaf_features(seed: int) -> dict[str, Any]:
    """The student's features as fresh leaves that collect gradients."""
    made = features(seed)
    return {
        "feats": [f.detach().clone().requires_grad_() for f in made["feats"]],
        "preact_feats": [f.detach().clone().requires_grad_() for f in made["preact_feats"]],
        "pooled_feat": made["pooled_feat"].detach().clone().requires_grad_(),
    }


def logits() -> torch.Tensor:
    return randn(50, BATCH, CLASSES)


def labels() -> torch.Tensor:
    return torch.randint(0, CLASSES, (BATCH,), generator=gen(51))


def train_labels() -> torch.Tensor:
    return torch.randint(0, TRAIN_CLASSES, (TRAIN_SIZE,), generator=gen(52))


def batch_indices() -> torch.Tensor:
    return torch.randperm(TRAIN_SIZE, generator=gen(53))[:BATCH]


def contrast_idx() -> torch.Tensor:
    """``[B, K + 1]``: each row's own index, then K distinct samples of the other classes."""
    labels_all, index = train_labels(), batch_indices()
    rows = []
    for r, i in enumerate(index.tolist()):
        pool = torch.nonzero(labels_all != labels_all[i]).flatten()
        pick = pool[torch.randperm(pool.numel(), generator=gen(60 + r))[:NCE_K]]
        rows.append(torch.cat([torch.tensor([i]), pick]))
    return torch.stack(rows)


def teacher_bns() -> nn.ModuleList:
    """The teacher's batch norms before the last ReLU of each stage; biases wide enough that some
    channels take OFD's ``-3 s`` branch."""
    bns = nn.ModuleList()
    for i, (c, _) in enumerate(STAGES[1:]):
        bn = nn.BatchNorm2d(c)
        with torch.no_grad():
            bn.weight.copy_(torch.randn(c, generator=gen(70 + i)) * 0.5)
            bn.bias.copy_(torch.randn(c, generator=gen(80 + i)) * 1.5)
        bns.append(bn)
    return bns


class StubModel(nn.Module):
    """A model that ignores its image and returns seeded logits and features of as many rows."""

    def __init__(self, logits: torch.Tensor, feats: dict[str, Any], bns: nn.ModuleList | None = None) -> None:
        super().__init__()
        self.logits, self.feats, self.bns = logits, feats, bns

    def forward(self, x: torch.Tensor, return_features: bool = True) -> tuple[torch.Tensor, dict[str, Any]]:
        n = x.shape[0]
        f = self.feats
        return self.logits[:n], {
            "feats": [t[:n] for t in f["feats"]],
            "preact_feats": [t[:n] for t in f["preact_feats"]],
            "pooled_feat": f["pooled_feat"][:n],
        }

    def get_bn_before_relu(self) -> list[nn.Module]:
        return list(self.bns) if self.bns is not None else []

    def get_stage_channels(self) -> list[int]:
        return [c for c, _ in STAGES]


def fill_state(module: nn.Module, seed: int = 1000) -> None:
    """Overwrite every floating state entry but CRD's ``params`` with seeded values (variances > 0)."""
    state = module.state_dict()
    with torch.no_grad():
        for i, (key, value) in enumerate(state.items()):
            if not value.is_floating_point() or key.endswith("params"):
                continue
            new = torch.randn(value.shape, generator=gen(seed + i), dtype=torch.float64) * 0.2
            if key.endswith("running_var"):
                new = new.abs() + 0.5
            value.copy_(new.to(value.dtype))


def summary(tensor: torch.Tensor, seed: int) -> list[float]:
    """Sum, sum of squares and a seeded random projection: three numbers that pin a tensor down."""
    t = tensor.detach().double().flatten()
    probe = torch.randn(t.numel(), generator=gen(seed), dtype=torch.float64)
    return [float(t.sum()), float((t * t).sum()), float((t * probe).sum())]


def grad_summaries(named: list[tuple[str, torch.Tensor]]) -> dict[str, list[float]]:
    return {
        name: summary(p.grad if p.grad is not None else torch.zeros_like(p), 9000 + i)
        for i, (name, p) in enumerate(named)
    }


def feature_grads(feats: dict[str, Any]) -> dict[str, list[float]]:
    """Gradient summaries of the student's feature leaves (zeros where the loss does not read one)."""
    tensors = [("pooled_feat", feats["pooled_feat"])]
    for kind in ("feats", "preact_feats"):
        tensors += [(f"{kind}.{i}", t) for i, t in enumerate(feats[kind])]
    return grad_summaries(tensors)


# ------------------------------------------------------------------------------ ekd's side
def pair_context(student: nn.Module, teacher: nn.Module) -> Any:
    from ekdcli.sdk.contracts import PairContext

    return PairContext(
        student=student,
        teacher=teacher,
        student_name="resnet8x4",
        teacher_name="resnet32x4",
        num_classes=CLASSES,
        in_channels=3,
        image_size=(32, 32),
        train_size=TRAIN_SIZE,
        train_labels=train_labels(),
    )


def batch_labels(method: str) -> torch.Tensor:
    return train_labels()[batch_indices()] if method == "crd" else labels()


def build_ekd(method: str, **options: Any) -> Any:
    """ekd's distiller of ``method`` bound to the stub pair, its module in float64 with seeded state."""
    import importlib

    factory = getattr(importlib.import_module(f"ekd_plugins.distillers.feature.{method}"), f"make_{method}")
    defaults = {"crd": {"nce_k": NCE_K}}.get(method, {})
    distiller = factory(**{**defaults, **options})
    student = StubModel(logits(), features(100))
    teacher = StubModel(randn(49, BATCH, CLASSES), features(200), teacher_bns())
    distiller.bind(pair_context(student, teacher))
    distiller.modules.double().train()
    fill_state(distiller.modules)
    return distiller


def run_ekd(method: str) -> dict[str, Any]:
    """ekd's loss terms, parameter and feature gradients (and CRD's state after the step)."""
    from ekdcli.sdk.contracts import DistillBatch, Features

    distiller = build_ekd(method)
    if method == "crd":
        fixed = contrast_idx()
        distiller.draw_contrast = lambda batch: fixed
    student = leaf_features(100)
    teacher = features(200)
    student_logits = logits().requires_grad_()
    batch = DistillBatch(
        student_logits=student_logits,
        teacher_logits=randn(49, BATCH, CLASSES),
        labels=batch_labels(method),
        indices=batch_indices(),
        epoch=EPOCH,
        student_features=Features(student["feats"], student["preact_feats"], student["pooled_feat"]),
        teacher_features=Features(teacher["feats"], teacher["preact_feats"], teacher["pooled_feat"]),
    )
    losses = distiller(batch)
    sum(losses.values()).backward()
    return {
        "losses": {"loss_ce": losses["loss_ce"].item(), "loss_feat": losses["loss_feat"].item()},
        "param_grads": grad_summaries(list(distiller.modules.named_parameters())),
        "feature_grads": feature_grads(student),
        "state_after": state_summaries(distiller.modules, method),
    }


def state_summaries(module: nn.Module, method: str) -> dict[str, list[float]]:
    """CRD's buffers after the step (banks and params); nothing for the others."""
    if method != "crd":
        return {}
    state = module.state_dict()
    return {
        key: summary(state[key], 9500 + i)
        for i, key in enumerate(("contrast.params", "contrast.memory_v1", "contrast.memory_v2"))
    }

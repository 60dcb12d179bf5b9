"""Seeded inputs of the feature-distiller equality tests (tests/distillers/test_feature_basic.py).

Everything here is reproducible from this file alone: shapes are written out, tensors come from
``torch.Generator`` seeds in a fixed order.  The script that produced the mdistiller numbers
(kept outside the repository) imported this module to build the very same tensors.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ekdcli.sdk.contracts import Features

BATCH, CLASSES = 8, 100

# feats of one image (without the batch dim) and pooled_feat width, as mdistiller's CIFAR models
# give them at 32x32 (student, teacher); "synthetic" covers FitNet's stride-2 and kernel regressors
# and the student-side pooling of AT/NST.
SETTINGS: dict[str, dict[str, Any]] = {
    "resnet32x4_resnet8x4": {
        "seed": 11,
        "student": ([(32, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8)], 256),
        "teacher": ([(32, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8)], 256),
    },
    "vgg13_mobilenetv2": {
        "seed": 12,
        "student": ([(16, 16, 16), (12, 16, 16), (16, 8, 8), (48, 4, 4), (160, 2, 2)], 1280),
        "teacher": ([(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 4, 4)], 512),
    },
    "synthetic": {
        "seed": 13,
        "student": ([(8, 32, 32), (16, 16, 16), (16, 12, 12)], 24),
        "teacher": ([(16, 32, 32), (32, 8, 8), (32, 8, 8)], 40),
    },
}

# (case id, method, setting, options, dtype): each compares ekd with mdistiller.
CASES: list[tuple[str, str, str, dict[str, Any], str]] = [
    ("fitnet_resnet_h2", "fitnet", "resnet32x4_resnet8x4", {}, "float64"),
    ("fitnet_vgg_mv2_h1", "fitnet", "vgg13_mobilenetv2", {"hint_layer": 1}, "float64"),
    ("fitnet_vgg_mv2_h4", "fitnet", "vgg13_mobilenetv2", {"hint_layer": 4}, "float64"),
    ("fitnet_synthetic_h1", "fitnet", "synthetic", {"hint_layer": 1}, "float64"),
    ("fitnet_synthetic_h2", "fitnet", "synthetic", {"hint_layer": 2}, "float64"),
    ("at_resnet", "at", "resnet32x4_resnet8x4", {}, "float64"),
    ("at_vgg_mv2", "at", "vgg13_mobilenetv2", {}, "float64"),
    ("at_synthetic_p3", "at", "synthetic", {"p": 3}, "float64"),
    ("pkt_resnet", "pkt", "resnet32x4_resnet8x4", {}, "float64"),
    ("pkt_vgg_mv2", "pkt", "vgg13_mobilenetv2", {}, "float64"),
    ("rkd_resnet", "rkd", "resnet32x4_resnet8x4", {}, "float64"),
    ("rkd_vgg_mv2_squared", "rkd", "vgg13_mobilenetv2", {"pdist_squared": True}, "float64"),
    ("sp_resnet", "sp", "resnet32x4_resnet8x4", {}, "float64"),
    ("sp_vgg_mv2", "sp", "vgg13_mobilenetv2", {}, "float64"),
    ("nst_resnet", "nst", "resnet32x4_resnet8x4", {}, "float64"),
    ("nst_vgg_mv2", "nst", "vgg13_mobilenetv2", {}, "float64"),
    ("nst_synthetic", "nst", "synthetic", {}, "float64"),
    # mdistiller's SVD casts to float32 (``.float()``): both sides get float32 features here.
    ("kdsvd_resnet", "kdsvd", "resnet32x4_resnet8x4", {}, "float32"),
    ("kdsvd_resnet_k2", "kdsvd", "resnet32x4_resnet8x4", {"k": 2}, "float32"),
]


def _features(g: torch.Generator, spec: tuple[list[tuple[int, ...]], int], dtype: torch.dtype) -> Features:
    maps, width = spec

    def draw(*shape: int) -> torch.Tensor:  # post-ReLU-like: non-negative
        return torch.randn(BATCH, *shape, generator=g, dtype=torch.float64).abs().to(dtype)

    feats = [draw(*shape) for shape in maps]
    preact = [draw(*shape) for shape in maps]
    return Features(feats, preact, draw(width))


def seeded_inputs(setting: str, dtype: torch.dtype) -> dict[str, Any]:
    """Logits, labels and both models' features of a setting; the student's require grad."""
    spec = SETTINGS[setting]
    g = torch.Generator().manual_seed(spec["seed"])
    logits = torch.randn(BATCH, CLASSES, generator=g, dtype=torch.float64).to(dtype)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=g)
    student, teacher = _features(g, spec["student"], dtype), _features(g, spec["teacher"], dtype)
    teacher_logits = torch.randn(BATCH, CLASSES, generator=g, dtype=torch.float64).to(dtype)
    for t in [logits, *student.feats, *student.preact_feats, student.pooled_feat]:
        t.requires_grad_(True)
    return {
        "logits": logits,
        "teacher_logits": teacher_logits,
        "labels": labels,
        "student": student,
        "teacher": teacher,
    }


def seeded_connector_state(module: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A state dict for ``module`` (float64, in sorted key order) that no initializer would give."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in sorted(module.state_dict().items()):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros_like(value)
        elif key.endswith("running_var") or key.endswith("bn.weight"):
            state[key] = 0.5 + torch.rand(value.shape, generator=g, dtype=torch.float64)
        else:
            state[key] = 0.2 * torch.randn(value.shape, generator=g, dtype=torch.float64)
    return state


def probe_vector(tensor: torch.Tensor, seed: int) -> torch.Tensor:
    """A fixed random direction with ``tensor``'s shape, to fingerprint a gradient by a dot product."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(tensor.shape, generator=g, dtype=torch.float64)


def gradient_summary(
    inputs: dict[str, Any], params: dict[str, torch.Tensor], seed: int
) -> dict[str, dict[str, float]]:
    """``{name: {"norm", "dot", "sum"}}`` of the gradients of the student's logits and features and
    of ``params`` (the connector's, by their state-dict names), in float64; absent ones are left out."""
    student = inputs["student"]
    named = {
        "logits": inputs["logits"],
        **{f"feats.{i}": f for i, f in enumerate(student.feats)},
        **{f"preact_feats.{i}": f for i, f in enumerate(student.preact_feats)},
        "pooled_feat": student.pooled_feat,
        **params,
    }
    out = {}
    for i, (name, tensor) in enumerate(named.items()):
        grad = tensor.grad
        if grad is None:
            continue
        grad = grad.detach().double()
        out[name] = {
            "norm": float(grad.norm()),
            "dot": float((grad * probe_vector(grad, seed + i)).sum()),
            "sum": float(grad.sum()),
        }
    return out


class StubModel(nn.Module):
    """A model whose forward returns fixed feature maps of the given per-image shapes (for bind())."""

    def __init__(self, maps: list[tuple[int, ...]], width: int) -> None:
        super().__init__()
        self.maps, self.width = maps, width
        self.anchor = nn.BatchNorm1d(1)  # a module whose train/eval mode the probe must restore

    def forward(self, x: torch.Tensor, return_features: bool = False) -> Any:
        n = x.shape[0]
        feats = [torch.zeros(n, *shape) for shape in self.maps]
        out = {"feats": feats, "preact_feats": feats, "pooled_feat": torch.zeros(n, self.width)}
        return (torch.zeros(n, CLASSES), out) if return_features else torch.zeros(n, CLASSES)

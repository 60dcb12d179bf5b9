"""ReviewKD (Chen et al., CVPR 2021, "Distilling Knowledge via Knowledge Review") as mdistiller
implements it.

The student's last stage features (``feats``, or ``preact_feats`` with ``stu_preact``; as many as the
teacher has stages after its stem) and
its pooled feature are fused from the deepest up by attention-based fusion (ABF) blocks:
each maps its input to ``mid`` channels (1x1 conv + BN), mixes it with the upsampled
residual of the deeper block through a two-channel sigmoid attention, resizes it to the
teacher's size and maps it to the teacher's channels (3x3 conv + BN).  The hierarchical
context loss (HCL) compares each output with the teacher's ``preact_feats[1:]`` / pooled
feature: MSE at full size plus MSE of 4x4, 2x2 and 1x1 average pools weighted 1/2, 1/4, 1/8,
divided by the total weight.  The loss is ``w_feat * min(epoch / warmup, 1) * sum HCL``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ekd_plugins.distillers.feature.modules_shared import (
    batch_features,
    cross_entropy,
    floats,
    pair_values,
    probe_features,
    require,
)
from ekd_plugins.distillers.feature.reviewkd_layout import (
    ReviewLayout,
    check_options,
    derive_layout,
    student_levels,
)
from ekdcli.sdk.contracts import DistillBatch, FeatureDistiller, PairContext


def hcl_loss(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    """Hierarchical context loss summed over the levels."""
    total = torch.zeros((), dtype=student[0].dtype, device=student[0].device)
    for fs, ft in zip(student, teacher, strict=True):
        loss, weight, norm = F.mse_loss(fs, ft), 1.0, 1.0
        for size in (4, 2, 1):
            if size >= fs.shape[2]:
                continue
            weight /= 2.0
            loss = loss + weight * F.mse_loss(
                F.adaptive_avg_pool2d(fs, size), F.adaptive_avg_pool2d(ft, size)
            )
            norm += weight
        total = total + loss / norm
    return total


class ABF(nn.Module):
    """Attention-based fusion: ``conv1`` (1x1 + BN), ``att_conv`` (1x1 + sigmoid, when fusing), ``conv2``
    (3x3 + BN)."""

    def __init__(self, in_channel: int, mid_channel: int, out_channel: int, fuse: bool) -> None:
        super().__init__()
        reduce = nn.Conv2d(in_channel, mid_channel, 1, bias=False)
        expand = nn.Conv2d(mid_channel, out_channel, 3, padding=1, bias=False)
        self.conv1 = nn.Sequential(reduce, nn.BatchNorm2d(mid_channel))
        self.conv2 = nn.Sequential(expand, nn.BatchNorm2d(out_channel))
        self.att_conv = nn.Sequential(nn.Conv2d(2 * mid_channel, 2, 1), nn.Sigmoid()) if fuse else None
        # after att_conv's default init: the random stream is consumed in mdistiller's order
        nn.init.kaiming_uniform_(reduce.weight, a=1)
        nn.init.kaiming_uniform_(expand.weight, a=1)

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None, shape: int, out_shape: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = x.shape
        x = self.conv1(x)
        if self.att_conv is not None and residual is not None:
            residual = F.interpolate(residual, (shape, shape), mode="nearest")
            att = self.att_conv(torch.cat([x, residual], dim=1))
            x = x * att[:, 0].view(n, 1, h, w) + residual * att[:, 1].view(n, 1, h, w)
        if x.shape[-1] != out_shape:
            x = F.interpolate(x, (out_shape, out_shape), mode="nearest")
        return self.conv2(x), x


class ReviewKDModules(nn.Module):
    """``abfs.{i}``, deepest level first (mdistiller's names and order)."""

    def __init__(self, layout: ReviewLayout) -> None:
        super().__init__()
        self.layout = layout
        mid = min(layout.max_mid_channel, layout.in_channels[-1])
        last = len(layout.in_channels) - 1
        blocks = [ABF(c, mid, layout.out_channels[i], i < last) for i, c in enumerate(layout.in_channels)]
        self.abfs = nn.ModuleList(blocks[::-1])

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Outputs for the student's levels (shallowest first); ``inputs`` are shallowest first too."""
        levels = inputs[::-1]
        shapes, out_shapes = self.layout.shapes, self.layout.out_shapes
        out, residual = self.abfs[0](levels[0], None, shapes[0], out_shapes[0])
        results = [out]
        for i in range(1, len(self.abfs)):
            out, residual = self.abfs[i](levels[i], residual, shapes[i], out_shapes[i])
            results.insert(0, out)
        return results


def _with_pooled(feats: list[torch.Tensor], pooled: torch.Tensor) -> list[torch.Tensor]:
    return [*feats, pooled.reshape(pooled.shape[0], -1, 1, 1)]


class ReviewKDDistiller(FeatureDistiller):
    """``w_ce * CE + w_feat * min(epoch / warmup, 1) * sum_levels HCL(ABF output, teacher feature)``."""

    name = "reviewkd"
    features = ("feats", "preact_feats", "pooled_feat")

    def __init__(self, w_ce: float, options: dict[str, Any]) -> None:
        self.w_ce, self.options = w_ce, dict(options)
        self.layout: ReviewLayout | None = None

    def bind(self, pair: PairContext) -> None:
        student, teacher = probe_features(pair, self.name)
        require(teacher, "preact_feats", "teacher", pair.teacher_name, self.name)
        known = pair_values(self.name, pair.teacher_name, pair.student_name)
        self.layout = derive_layout(student, teacher, self.options, known)
        if self.layout.stu_preact:
            require(student, "preact_feats", "student", pair.student_name, self.name)
        self.modules = ReviewKDModules(self.layout)

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"method": self.name, "w_ce": self.w_ce}
        if self.layout is not None:
            described.update(self.layout.describe())
        return described

    def __call__(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        assert isinstance(self.modules, ReviewKDModules) and self.layout is not None, (
            "bind() builds the ABFs first"
        )
        student, teacher = batch_features(batch, self.name)
        source = student.preact_feats if self.layout.stu_preact else student.feats
        levels = student_levels(source, len(teacher.preact_feats) - 1)
        inputs = _with_pooled(floats(levels), upcast_pooled(student.pooled()))
        targets = _with_pooled(floats(teacher.preact_feats[1:]), upcast_pooled(teacher.pooled()))
        warm = min(batch.epoch / self.layout.warmup, 1.0)
        loss = self.layout.w_feat * warm * hcl_loss(floats(self.modules(inputs)), targets)
        return {"loss_ce": self.w_ce * cross_entropy(batch), "loss_feat": loss}


def upcast_pooled(pooled: torch.Tensor) -> torch.Tensor:
    return floats([pooled])[0]


def make_reviewkd(**options: Any) -> ReviewKDDistiller:
    own = check_options(options)
    return ReviewKDDistiller(w_ce=own.pop("w_ce"), options=own)

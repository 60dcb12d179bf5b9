"""Relational knowledge distillation (Park et al., CVPR 2019) as mdistiller runs it, on ``pooled_feat``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ekd_plugins.distillers.feature._common import FeatureLossDistiller
from ekd_plugins.distillers.feature.options_basic import RKDOptions
from ekdcli.sdk.contracts import Features
from ekdcli.sdk.options import owner, read_options


def pairwise_distances(e: torch.Tensor, squared: bool, eps: float) -> torch.Tensor:
    """``[N, N]`` Euclidean distances (squared ones with ``squared``), clamped at ``eps`` before
    the root, with a zero diagonal."""
    sq = e.pow(2).sum(dim=1)
    dist = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * (e @ e.t())).clamp(min=eps)
    if not squared:
        dist = dist.sqrt()
    eye = torch.eye(len(e), dtype=torch.bool, device=e.device)
    return dist.masked_fill(eye, 0.0)


def normalized_distances(e: torch.Tensor, squared: bool, eps: float) -> torch.Tensor:
    """Pairwise distances divided by the mean of the positive ones."""
    dist = pairwise_distances(e, squared, eps)
    return dist / dist[dist > 0].mean()


def angles(e: torch.Tensor) -> torch.Tensor:
    """``[N*N*N]`` cosines of the angles ``e_j - e_i`` vs ``e_k - e_i`` of every triplet."""
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
    return torch.bmm(diff, diff.transpose(1, 2)).flatten()


class RKDDistiller(FeatureLossDistiller):
    """``w_ce * CE + w_feat * (distance_weight * L_dist + angle_weight * L_angle)``, smooth-L1 each."""

    name = "rkd"
    features = ("pooled_feat",)

    def __init__(
        self,
        w_ce: float,
        w_feat: float,
        distance_weight: float,
        angle_weight: float,
        eps: float,
        squared: bool,
    ) -> None:
        super().__init__(
            w_ce,
            w_feat,
            distance_weight=distance_weight,
            angle_weight=angle_weight,
            pdist_eps=eps,
            pdist_squared=squared,
        )
        self.distance_weight, self.angle_weight, self.eps, self.squared = (
            distance_weight,
            angle_weight,
            eps,
            squared,
        )

    def feature_loss(self, student: Features, teacher: Features) -> torch.Tensor:
        stu = student.pooled().flatten(1)
        tea = teacher.pooled().flatten(1).detach()
        with torch.no_grad():
            t_dist, t_angle = normalized_distances(tea, self.squared, self.eps), angles(tea)
        loss_d = F.smooth_l1_loss(normalized_distances(stu, self.squared, self.eps), t_dist)
        loss_a = F.smooth_l1_loss(angles(stu), t_angle)
        return self.distance_weight * loss_d + self.angle_weight * loss_a


def make_rkd(**options: Any) -> RKDDistiller:
    opts = read_options(owner("distiller", "rkd"), RKDOptions, options)
    return RKDDistiller(
        opts["w_ce"],
        opts["w_feat"],
        distance_weight=opts["distance_weight"],
        angle_weight=opts["angle_weight"],
        eps=opts["pdist_eps"],
        squared=opts["pdist_squared"],
    )

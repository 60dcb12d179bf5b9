"""VID (Ahn et al., CVPR 2019) as mdistiller implements it.

For each stage after the stem: a regressor (1x1 conv, ReLU, 1x1 conv, ReLU, 1x1 conv, no biases)
predicts the teacher's feature map from the student's (the larger map average-pooled to the
smaller one's size first); the loss is the Gaussian negative log-likelihood
``mean(0.5 * ((mu - t)^2 / var + log var))`` with ``var = softplus(log_scale) + eps`` per teacher
channel, summed over the stages and weighted by ``w_feat``.

mdistiller keeps ``log_scales`` in a plain Python list: they are neither in its state dict nor
trained, so ``var`` stays at ``init_pred_var`` for the whole run.  ekd does the same (fixed,
non-persistent buffers), which keeps the state dict equal to mdistiller's (``regressors.*``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ekd_plugins.distillers.feature.modules_shared import (
    batch_features,
    cross_entropy,
    floats,
    probe_features,
    require,
)
from ekd_plugins.distillers.feature.options_modules import VIDOptions
from ekdcli.sdk.contracts import DistillBatch, FeatureDistiller, PairContext
from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.losses import upcast
from ekdcli.sdk.options import owner, read_options


def _conv1x1(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=1, bias=False)


class VIDModules(nn.Module):
    """``regressors.{i}`` (mdistiller's names) and the fixed ``log_scale_{i}`` of each stage."""

    def __init__(
        self, s_channels: list[int], t_channels: list[int], init_pred_var: float, eps: float
    ) -> None:
        super().__init__()
        self.regressors = nn.ModuleList(
            nn.Sequential(_conv1x1(s, t), nn.ReLU(), _conv1x1(t, t), nn.ReLU(), _conv1x1(t, t))
            for s, t in zip(s_channels, t_channels, strict=True)
        )
        # softplus^-1(init_pred_var - eps), so that softplus(log_scale) + eps = init_pred_var.
        start = math.log(math.exp(init_pred_var - eps) - 1.0)
        for i, t in enumerate(t_channels):
            self.register_buffer(f"log_scale_{i}", torch.full((t,), start), persistent=False)

    def log_scale(self, i: int) -> torch.Tensor:
        scale: torch.Tensor = getattr(self, f"log_scale_{i}")
        return scale

    def stage_loss(self, i: int, f_s: torch.Tensor, f_t: torch.Tensor, eps: float) -> torch.Tensor:
        s_h, t_h = f_s.shape[2], f_t.shape[2]
        if s_h > t_h:
            f_s = F.adaptive_avg_pool2d(f_s, (t_h, t_h))
        elif s_h < t_h:
            f_t = F.adaptive_avg_pool2d(f_t, (s_h, s_h))
        mean = upcast(self.regressors[i](f_s))  # autocast may give bf16
        var = (F.softplus(self.log_scale(i)) + eps).to(mean).view(1, -1, 1, 1)
        return (0.5 * ((mean - f_t) ** 2 / var + torch.log(var))).mean()


class VIDDistiller(FeatureDistiller):
    """``w_ce * CE + w_feat * sum_stages NLL(teacher feature | regressor(student feature))``."""

    name = "vid"
    features = ("feats",)

    def __init__(self, w_ce: float, w_feat: float, eps: float, init_pred_var: float) -> None:
        self.w_ce, self.w_feat, self.eps, self.init_pred_var = w_ce, w_feat, eps, init_pred_var

    def bind(self, pair: PairContext) -> None:
        student, teacher = probe_features(pair, self.name)
        require(student, "feats", "student", pair.student_name, self.name)
        require(teacher, "feats", "teacher", pair.teacher_name, self.name)
        s_channels = [int(f.shape[1]) for f in student.feats[1:]]
        t_channels = [int(f.shape[1]) for f in teacher.feats[1:]]
        self.modules = VIDModules(s_channels, t_channels, self.init_pred_var, self.eps)

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "w_ce": self.w_ce,
            "w_feat": self.w_feat,
            "eps": self.eps,
            "init_pred_var": self.init_pred_var,
        }

    def __call__(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        assert isinstance(self.modules, VIDModules), "bind() builds the regressors first"
        student, teacher = batch_features(batch, self.name)
        f_s, f_t = floats(student.feats[1:]), floats(teacher.feats[1:])
        total = sum(
            (
                self.modules.stage_loss(i, s, t, self.eps)
                for i, (s, t) in enumerate(zip(f_s, f_t, strict=True))
            ),
            torch.zeros((), dtype=f_s[0].dtype, device=f_s[0].device),
        )
        return {"loss_ce": self.w_ce * cross_entropy(batch), "loss_feat": self.w_feat * total}


def make_vid(**options: Any) -> VIDDistiller:
    who = owner("distiller", "vid")
    opts = read_options(who, VIDOptions, options)
    eps, init_pred_var = opts["eps"], opts["init_pred_var"]
    if init_pred_var <= eps:
        raise UsageError(
            f"option 'init_pred_var' of {who} must be greater than 'eps' ({eps}), got {init_pred_var}."
        )
    return VIDDistiller(w_ce=opts["w_ce"], w_feat=opts["w_feat"], eps=eps, init_pred_var=init_pred_var)

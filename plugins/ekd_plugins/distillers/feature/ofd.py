"""OFD (Heo et al., ICCV 2019, "A Comprehensive Overhaul of Feature Distillation") as mdistiller
implements it.

Each stage's pre-ReLU student feature goes through a connector (conv ``connector_kernel`` x
``connector_kernel``, no bias, then batch norm) to the teacher's channels; the partial L2 loss
against the teacher's pre-ReLU feature (average-pooled to the student's size) skips positions
where both are below the teacher's margin, and stage ``i`` of ``n`` is weighted by
``1 / 2^(n-i-1)``.  The margin of each teacher channel is the expected value of its
pre-activation below zero, from the batch norm before the ReLU (``weight`` = std,
``bias`` = mean): ``m - s * phi(m/s) / Phi(-m/s)`` where ``Phi(-m/s) > 0.001``, else ``-3 s``.
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
    pair_values,
    probe_features,
    require,
)
from ekd_plugins.distillers.feature.options_modules import OFD_W_FEAT, OFDOptions
from ekdcli.sdk.contracts import DistillBatch, FeatureDistiller, PairContext
from ekdcli.sdk.errors import JobError
from ekdcli.sdk.losses import upcast
from ekdcli.sdk.options import owner, read_options


def normal_cdf(x: float) -> float:
    """The standard normal CDF (scipy's ``norm.cdf``), through the complementary error function."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def channel_margin(weight: float, bias: float) -> float:
    """The OFD margin of one channel whose pre-activation is ``N(bias, weight^2)``."""
    s, m = abs(weight), bias
    if s == 0.0:
        return min(m, 0.0)  # a constant pre-activation (mdistiller divides by zero here)
    below = normal_cdf(-m / s)
    if below > 0.001:
        return -s * math.exp(-((m / s) ** 2) / 2) / math.sqrt(2 * math.pi) / below + m
    return -3 * s


def bn_margins(bn: nn.Module) -> torch.Tensor:
    """``[1, C, 1, 1]`` float32 margins of a batch norm's channels (mdistiller keeps float32)."""
    weights, biases = bn.weight.detach().double().tolist(), bn.bias.detach().double().tolist()  # type: ignore[operator]
    margins = [channel_margin(w, b) for w, b in zip(weights, biases, strict=True)]
    return torch.tensor(margins, dtype=torch.float32).view(1, -1, 1, 1)


def ofd_feat_loss(source: torch.Tensor, target: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """Partial L2: no loss where the student is below the margin and the teacher too."""
    margin = margin.to(source)
    below = (source > margin) & (target <= margin)
    neg_teacher = (source > target) & (target > margin) & (target <= 0)
    loss = (source - margin) ** 2 * below + (source - target) ** 2 * (neg_teacher | (target > 0))
    return loss.abs().mean(dim=0).sum()


class _Connectors(nn.Module):
    def __init__(self, s_channels: list[int], t_channels: list[int], kernel: int) -> None:
        super().__init__()
        self.connectors = nn.ModuleList(
            _connector(s, t, kernel) for s, t in zip(s_channels, t_channels, strict=True)
        )


def _connector(s_channel: int, t_channel: int, kernel: int) -> nn.Sequential:
    conv = nn.Conv2d(s_channel, t_channel, kernel, stride=1, padding=(kernel - 1) // 2, bias=False)
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (kernel * kernel * t_channel)))
    return nn.Sequential(conv, nn.BatchNorm2d(t_channel))


class OFDModules(nn.Module):
    """``connectors.connectors.{i}`` (mdistiller's names) and the teacher's fixed ``margin_{i}``.

    The margins follow from the frozen teacher, so they are non-persistent buffers: they move
    with the module but stay out of its state dict, which therefore equals mdistiller's.
    """

    def __init__(
        self, s_channels: list[int], t_channels: list[int], margins: list[torch.Tensor], kernel: int
    ) -> None:
        super().__init__()
        self.connectors = _Connectors(s_channels, t_channels, kernel)
        self.count = len(margins)
        for i, margin in enumerate(margins):
            self.register_buffer(f"margin_{i}", margin, persistent=False)

    def loss(self, f_s: list[torch.Tensor], f_t: list[torch.Tensor]) -> torch.Tensor:
        n = len(f_s)
        total = torch.zeros((), dtype=f_s[0].dtype, device=f_s[0].device)
        for i, (s, t) in enumerate(zip(f_s, f_t, strict=True)):
            out = upcast(self.connectors.connectors[i](s))  # autocast may give bf16
            target = F.adaptive_avg_pool2d(t, (int(out.shape[-2]), int(out.shape[-1]))).detach()
            total = total + ofd_feat_loss(out, target, getattr(self, f"margin_{i}")) / 2 ** (n - i - 1)
        return total


def _last(items: list[Any], count: int) -> list[Any]:
    return items[len(items) - count :]


class OFDDistiller(FeatureDistiller):
    """``w_ce * CE + w_feat * sum_i partial_L2(connector_i(student_i), teacher_i) / 2^(n-i-1)``."""

    name = "ofd"
    features = ("preact_feats",)
    model_hooks = ("bn_before_relu",)

    def __init__(self, w_ce: float, w_feat: float | None, connector_kernel: int) -> None:
        self.w_ce, self.w_feat_given, self.connector_kernel = w_ce, w_feat, connector_kernel
        self.w_feat = OFD_W_FEAT if w_feat is None else w_feat

    def bind(self, pair: PairContext) -> None:
        student, teacher = probe_features(pair, self.name)
        require(student, "preact_feats", "student", pair.student_name, self.name)
        require(teacher, "preact_feats", "teacher", pair.teacher_name, self.name)
        if self.w_feat_given is None:
            self.w_feat = float(
                pair_values(self.name, pair.teacher_name, pair.student_name).get("w_feat", OFD_W_FEAT)
            )
        hook = getattr(pair.teacher, "get_bn_before_relu", None)
        if hook is None:
            raise JobError(
                f"distiller 'ofd' needs the teacher's get_bn_before_relu(); {pair.teacher_name} has none."
            )
        bns = list(hook())
        s_channels = [int(f.shape[1]) for f in student.preact_feats[1:]]
        t_channels = [int(f.shape[1]) for f in teacher.preact_feats[1:]]
        # mdistiller aligns the stage lists on their last entries (_align_list).
        count = min(len(s_channels), len(t_channels), len(bns))
        self.modules = OFDModules(
            _last(s_channels, count),
            _last(t_channels, count),
            [bn_margins(bn) for bn in _last(bns, count)],
            self.connector_kernel,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "w_ce": self.w_ce,
            "w_feat": self.w_feat,
            "connector_kernel": self.connector_kernel,
        }

    def __call__(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        assert isinstance(self.modules, OFDModules), "bind() builds the connectors first"
        student, teacher = batch_features(batch, self.name)
        count = self.modules.count
        f_s = floats(_last(student.preact_feats[1:], count))
        f_t = floats(_last(teacher.preact_feats[1:], count))
        return {
            "loss_ce": self.w_ce * cross_entropy(batch),
            "loss_feat": self.w_feat * self.modules.loss(f_s, f_t),
        }


def make_ofd(**options: Any) -> OFDDistiller:
    opts = read_options(owner("distiller", "ofd"), OFDOptions, options)
    return OFDDistiller(w_ce=opts["w_ce"], w_feat=opts["w_feat"], connector_kernel=opts["connector_kernel"])

"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017) as mdistiller runs it, on ``feats[1:]``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ekd_plugins.distillers.feature._common import (
    FeatureLossDistiller,
    same_height,
)
from ekd_plugins.distillers.feature.options_basic import ATOptions
from ekdcli.sdk.contracts import Features
from ekdcli.sdk.options import owner, read_options


def attention_map(feat: torch.Tensor, p: float) -> torch.Tensor:
    """``[N, H*W]``: the channel mean of ``feat ** p``, L2-normalized per sample."""
    return F.normalize(feat.pow(p).mean(dim=1).flatten(1), dim=1)


class ATDistiller(FeatureLossDistiller):
    """``w_ce * CE + w_feat * sum_stages mean((a_s - a_t)^2)`` over the attention maps of ``feats[1:]``."""

    name = "at"

    def __init__(self, w_ce: float, w_feat: float, p: float) -> None:
        super().__init__(w_ce, w_feat, p=p)
        self.p = p

    def feature_loss(self, student: Features, teacher: Features) -> torch.Tensor:
        terms = []
        for f_s, f_t in zip(student.feats[1:], teacher.feats[1:], strict=False):
            f_s, f_t = same_height(f_s, f_t)
            terms.append((attention_map(f_s, self.p) - attention_map(f_t, self.p)).pow(2).mean())
        return torch.stack(terms).sum()


def make_at(**options: Any) -> ATDistiller:
    opts = read_options(owner("distiller", "at"), ATOptions, options)
    return ATDistiller(opts["w_ce"], opts["w_feat"], opts["p"])

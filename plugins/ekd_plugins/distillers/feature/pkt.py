"""Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018) as mdistiller runs it, on ``pooled_feat``."""

from __future__ import annotations

from typing import Any

import torch

from ekd_plugins.distillers.feature._common import FeatureLossDistiller
from ekd_plugins.distillers.feature.options_basic import PKTOptions
from ekdcli.sdk.contracts import Features
from ekdcli.sdk.options import owner, read_options

# mdistiller's fixed epsilon (norms and the KL's logarithm); not an option there either.
PKT_EPS = 1e-7


def similarity_distribution(feat: torch.Tensor) -> torch.Tensor:
    """Row-normalized ``(cos + 1) / 2`` between the batch's rows (NaNs of zero rows become 0)."""
    unit = feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + PKT_EPS)
    unit = torch.where(torch.isnan(unit), torch.zeros_like(unit), unit)
    similarity = (unit @ unit.t() + 1.0) / 2.0
    return similarity / similarity.sum(dim=1, keepdim=True)


def pkt_divergence(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """Mean over all entries of ``q_t * log((q_t + eps) / (q_s + eps))``."""
    q_s, q_t = similarity_distribution(f_s), similarity_distribution(f_t)
    return (q_t * torch.log((q_t + PKT_EPS) / (q_s + PKT_EPS))).mean()


class PKTDistiller(FeatureLossDistiller):
    """``w_ce * CE + w_feat * KL(q_t || q_s)`` of the pooled features' similarity distributions."""

    name = "pkt"
    features = ("pooled_feat",)

    def feature_loss(self, student: Features, teacher: Features) -> torch.Tensor:
        return pkt_divergence(student.pooled(), teacher.pooled())


def make_pkt(**options: Any) -> PKTDistiller:
    opts = read_options(owner("distiller", "pkt"), PKTOptions, options)
    return PKTDistiller(opts["w_ce"], opts["w_feat"])

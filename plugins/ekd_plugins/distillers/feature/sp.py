"""Similarity-preserving KD (Tung & Mori, ICCV 2019) as mdistiller runs it, on ``feats[-1]``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ekd_plugins.distillers.feature._common import FeatureLossDistiller
from ekd_plugins.distillers.feature.options_basic import SPOptions
from ekdcli.sdk.contracts import Features
from ekdcli.sdk.options import owner, read_options


def similarity_matrix(feat: torch.Tensor) -> torch.Tensor:
    """``[N, N]``: the batch's Gram matrix of flattened maps, each row L2-normalized."""
    flat = feat.flatten(1)
    return F.normalize(flat @ flat.t(), dim=1)


def similarity_loss(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """``||G_t - G_s||_F^2 / N^2``."""
    batch = f_s.shape[0]
    return (similarity_matrix(f_t) - similarity_matrix(f_s)).pow(2).sum() / (batch * batch)


class SPDistiller(FeatureLossDistiller):
    """``w_ce * CE + w_feat * ||G_t - G_s||_F^2 / N^2`` on the last stage's maps."""

    name = "sp"

    def feature_loss(self, student: Features, teacher: Features) -> torch.Tensor:
        return similarity_loss(student.feats[-1], teacher.feats[-1])


def make_sp(**options: Any) -> SPDistiller:
    opts = read_options(owner("distiller", "sp"), SPOptions, options)
    return SPDistiller(opts["w_ce"], opts["w_feat"])

"""KD with singular value decomposition (Lee et al., ECCV 2018) as mdistiller runs it, on ``feats[1:]``.

Each stage's map ``[N, C, H, W]`` is read as ``N`` matrices ``[C*H, W]``; the teacher's ``k`` and
the student's ``k + 3`` leading right singular vectors are kept, the student's are matched to the
teacher's by their largest absolute cosine (with its sign), both are scaled by the teacher's
normalized singular values, and the loss compares the RBF relations between consecutive stages.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ekd_plugins.distillers.feature._common import (
    FeatureLossDistiller,
    probe_feature_shapes,
)
from ekd_plugins.distillers.feature.options_basic import KDSVDOptions
from ekdcli.sdk.contracts import Features, PairContext
from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.options import owner, read_options


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def leading_singular(feat: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s [N, n], v [N, W, n])``: the ``n`` largest singular values (L2-normalized per sample) and
    their right singular vectors (unit columns) of each sample's ``[C*H, W]`` matrix."""
    size = feat.shape
    _, s, vh = torch.linalg.svd(feat.reshape(size[0], size[1] * size[2], size[3]), full_matrices=False)
    s, v = _finite(s), _finite(vh.mH)
    return F.normalize(s[:, :n], dim=1), F.normalize(v[:, :, :n], dim=1)


def align_to(v_s: torch.Tensor, v_t: torch.Tensor) -> torch.Tensor:
    """For each teacher vector, the student vector of largest ``|cos|``, signed to agree with it."""
    cosine = v_s.mT @ v_t
    best = cosine.abs().max(dim=1, keepdim=True).values
    selection = torch.where(best == cosine.abs(), torch.sign(cosine), torch.zeros_like(cosine))
    return v_s @ selection


def rbf(v: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """``exp(-(v_i - p_j)^2 / 8)`` between this stage's and the previous stage's vector entries."""
    return torch.exp(-(v.unsqueeze(2) - previous.unsqueeze(1)).pow(2) / 8)


def svd_relation_loss(g_s: list[torch.Tensor], g_t: list[torch.Tensor], k: int) -> torch.Tensor:
    """Sum over consecutive stage pairs of the squared RBF differences, divided by the batch size."""
    total = g_s[0].new_zeros(())
    previous: tuple[torch.Tensor, torch.Tensor] | None = None
    for f_s, f_t in zip(g_s, g_t, strict=False):
        s_t, v_t = leading_singular(f_t.detach(), k)
        _, v_s = leading_singular(f_s, k + 3)
        scale = s_t.unsqueeze(1)
        v_s, v_t = align_to(v_s, v_t) * scale, v_t * scale
        if previous is not None:
            diff = (rbf(v_s, previous[0]) - rbf(v_t, previous[1]).detach()).pow(2)
            total = total + _finite(diff).sum() / g_s[0].shape[0]
        previous = (v_s, v_t)
    return total


class KDSVDDistiller(FeatureLossDistiller):
    """``w_ce * CE + w_feat * svd_relation_loss(feats[1:])``."""

    name = "kdsvd"

    def __init__(self, w_ce: float, w_feat: float, k: int) -> None:
        super().__init__(w_ce, w_feat, k=k)
        self.k = k

    def bind(self, pair: PairContext) -> None:
        super().bind(pair)
        student, teacher = probe_feature_shapes(pair)
        for stage, (s, t) in enumerate(zip(student[1:], teacher[1:], strict=False), start=1):
            if s[3] != t[3]:
                raise UsageError(
                    f"kdsvd compares singular vectors of equally wide maps, but stage {stage} of "
                    f"{pair.student_name} is {s[3]} wide and {pair.teacher_name}'s is {t[3]}; "
                    "choose a pair whose stages have the same spatial sizes."
                )

    def feature_loss(self, student: Features, teacher: Features) -> torch.Tensor:
        return svd_relation_loss(student.feats[1:], teacher.feats[1:], self.k)


def make_kdsvd(**options: Any) -> KDSVDDistiller:
    opts = read_options(owner("distiller", "kdsvd"), KDSVDOptions, options)
    return KDSVDDistiller(opts["w_ce"], opts["w_feat"], opts["k"])

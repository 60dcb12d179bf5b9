"""CRD (Tian et al., ICLR 2020, "Contrastive Representation Distillation") as mdistiller implements it.

Both pooled features are embedded (linear layer, then L2 normalization) to ``feat_dim``.  Two
memory banks hold an embedding of every training sample (``memory_v1``: the student's,
``memory_v2``: the teacher's).  For each sample, the student embedding is scored against the
teacher bank's rows of its ``nce_k + 1`` contrast indices (positive first) and vice versa:
``exp(<v, m> / nce_t) / Z`` with ``Z`` fixed at the first batch (``mean * train_size``).  The NCE
loss of each side is ``-(log P_pos/(P_pos + k/N + eps) + sum log (k/N)/(P_neg + k/N + eps)) / B``.
After scoring, the rows of the batch's samples move to ``momentum * row + (1 - momentum) * v``,
renormalized.  The banks and ``params`` (K, T, Z_v1, Z_v2, momentum) are buffers of the module:
they are checkpointed and a resumed run continues exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ekd_plugins.distillers.feature.crd_sampling import contrast_indices, negatives_available
from ekd_plugins.distillers.feature.modules_shared import (
    batch_features,
    cross_entropy,
    probe_features,
    require,
)
from ekd_plugins.distillers.feature.options_modules import CRDOptions
from ekdcli.sdk.contracts import DistillBatch, FeatureDistiller, PairContext
from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.losses import upcast
from ekdcli.sdk.options import owner, read_options

NCE_EPS = 1e-7


class CRDEmbed(nn.Module):
    """``linear`` to ``feat_dim``, then division by the L2 norm (no epsilon, as mdistiller)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x.reshape(x.shape[0], -1))
        return x / x.pow(2).sum(1, keepdim=True).sqrt()


def nce_loss(scores: torch.Tensor, train_size: int) -> torch.Tensor:
    """CRD's NCE loss of ``[B, k + 1, 1]`` scores (positive first), noise ``1 / train_size``."""
    batch, k = scores.shape[0], scores.shape[1] - 1
    noise = k / float(train_size)
    positive, negatives = scores[:, 0], scores[:, 1:]
    log_d1 = torch.log(positive / (positive + noise + NCE_EPS))
    log_d0 = torch.log(noise / (negatives + noise + NCE_EPS))
    return -(log_d1.sum() + log_d0.sum()) / batch


class CRDMemory(nn.Module):
    """mdistiller's ``ContrastMemory`` state: ``params`` = (K, T, Z_v1, Z_v2, momentum) and two banks."""

    def __init__(self, feat_dim: int, labels: torch.Tensor, k: int, t: float, momentum: float) -> None:
        super().__init__()
        n = labels.numel()
        self.register_buffer("params", torch.tensor([k, t, -1.0, -1.0, momentum]))
        bound = 1.0 / math.sqrt(feat_dim / 3)
        self.register_buffer("memory_v1", torch.rand(n, feat_dim).mul_(2 * bound).add_(-bound))
        self.register_buffer("memory_v2", torch.rand(n, feat_dim).mul_(2 * bound).add_(-bound))
        self.register_buffer("sample_labels", labels.long().clone(), persistent=False)

    def _bank(self, name: str) -> torch.Tensor:
        bank: torch.Tensor = getattr(self, name)
        return bank

    @property
    def labels(self) -> torch.Tensor:
        """The class of every training sample (for drawing contrast indices)."""
        return self._bank("sample_labels")

    def _scores(self, bank: str, v: torch.Tensor, idx: torch.Tensor, z_slot: int) -> torch.Tensor:
        memory, params = self._bank(bank), self._bank("params")
        rows = memory.index_select(0, idx.reshape(-1)).detach().view(idx.shape[0], idx.shape[1], -1)
        # clone(): autograd must not see the later in-place writes into params
        scores = torch.exp(torch.bmm(rows, v.unsqueeze(2)) / params[1].clone())
        with torch.no_grad():  # Z is set once, from the first batch (mdistiller: when still -1)
            first = scores.detach().mean() * memory.shape[0]
            params[z_slot] = torch.where(params[z_slot] < 0, first.to(params), params[z_slot])
        return scores / params[z_slot].clone()

    @torch.no_grad()
    def _update(self, bank: str, v: torch.Tensor, y: torch.Tensor) -> None:
        memory, momentum = self._bank(bank), self._bank("params")[4]
        rows = memory.index_select(0, y) * momentum + v.detach() * (1 - momentum)
        memory.index_copy_(0, y, rows / rows.pow(2).sum(1, keepdim=True).sqrt())

    def forward(
        self, v1: torch.Tensor, v2: torch.Tensor, y: torch.Tensor, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of the student (v1, against the teacher bank) and the teacher (v2, student bank)."""
        out_v2 = self._scores("memory_v1", v2, idx, 3)
        out_v1 = self._scores("memory_v2", v1, idx, 2)
        self._update("memory_v1", v1, y)
        self._update("memory_v2", v2, y)
        return out_v1, out_v2


class CRDModules(nn.Module):
    """``embed_s``, ``embed_t`` and ``contrast`` (mdistiller's names)."""

    def __init__(
        self, s_dim: int, t_dim: int, feat_dim: int, labels: torch.Tensor, k: int, t: float, momentum: float
    ):
        super().__init__()
        self.embed_s = CRDEmbed(s_dim, feat_dim)
        self.embed_t = CRDEmbed(t_dim, feat_dim)
        self.contrast = CRDMemory(feat_dim, labels, k, t, momentum)

    def loss(
        self, f_s: torch.Tensor, f_t: torch.Tensor, index: torch.Tensor, idx: torch.Tensor
    ) -> torch.Tensor:
        out_s, out_t = self.contrast(self.embed_s(f_s), self.embed_t(f_t), index, idx)
        n = self.contrast.labels.numel()
        return nce_loss(out_s, n) + nce_loss(out_t, n)


class CRDDistiller(FeatureDistiller):
    """``w_ce * CE + w_feat * (NCE_student + NCE_teacher)`` over the memory banks."""

    name = "crd"
    features = ("pooled_feat",)

    def __init__(
        self,
        w_ce: float,
        w_feat: float,
        mode: str,
        feat_dim: int,
        nce_k: int,
        nce_momentum: float,
        nce_t: float,
    ):
        self.w_ce, self.w_feat, self.mode, self.feat_dim = w_ce, w_feat, mode, feat_dim
        self.nce_k, self.nce_momentum, self.nce_t = nce_k, nce_momentum, nce_t

    def bind(self, pair: PairContext) -> None:
        if pair.world_size > 1:
            raise UsageError(
                "distiller 'crd' runs in one process only (its memory bank is not shared across GPUs)."
            )
        available = negatives_available(pair.train_labels)
        if self.nce_k > available:
            raise UsageError(
                f"distiller 'crd' draws nce_k={self.nce_k} negatives per sample from the other classes, but "
                f"this training set has only {available} for its largest class; set it to at most {available}, "
                f"e.g. --set distiller.nce_k={available}."
            )
        student, teacher = probe_features(pair, self.name)
        require(student, "pooled_feat", "student", pair.student_name, self.name)
        require(teacher, "pooled_feat", "teacher", pair.teacher_name, self.name)
        s_dim, t_dim = int(student.pooled()[0].numel()), int(teacher.pooled()[0].numel())
        self.modules = CRDModules(
            s_dim, t_dim, self.feat_dim, pair.train_labels, self.nce_k, self.nce_t, self.nce_momentum
        )

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "w_ce": self.w_ce,
            "w_feat": self.w_feat,
            "mode": self.mode,
            "feat_dim": self.feat_dim,
            "nce_k": self.nce_k,
            "nce_momentum": self.nce_momentum,
            "nce_t": self.nce_t,
        }

    def draw_contrast(self, batch: DistillBatch) -> torch.Tensor:
        """``[B, nce_k + 1]`` bank rows of the batch: positive first, then negatives (batch.generator)."""
        assert isinstance(self.modules, CRDModules), "bind() builds the banks first"
        labels = self.modules.contrast.labels
        return contrast_indices(labels, batch.indices.long(), self.nce_k, self.mode, batch.generator)

    def __call__(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        assert isinstance(self.modules, CRDModules), "bind() builds the embeddings and banks first"
        student, teacher = batch_features(batch, self.name)
        index = batch.indices.long()
        idx = self.draw_contrast(batch)
        # exp(score / 0.07) overflows in half precision: the contrast runs in float32 at least.
        with torch.autocast(device_type=index.device.type, enabled=False):
            loss = self.modules.loss(upcast(student.pooled()), upcast(teacher.pooled()), index, idx)
        return {"loss_ce": self.w_ce * cross_entropy(batch), "loss_feat": self.w_feat * loss}


def make_crd(**options: Any) -> CRDDistiller:
    return CRDDistiller(**read_options(owner("distiller", "crd"), CRDOptions, options))

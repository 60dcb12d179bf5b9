"""The baselines: cross-entropy, KD (Hinton et al.) and DKD (Zhao et al., CVPR 2022).

Each ``__call__`` returns the named, already weighted loss terms; the engine
sums them.  CE always sees the raw logits; with ``logit_standardize`` the
distillation terms see z-scored teacher and student logits (Sun et al., CVPR 2024).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ekd_plugins.distillers.functional import dkd_terms, standardize_logits, upcast, warmup_factor
from ekd_plugins.distillers.options import CE_OPTIONS, DKD_OPTIONS, KD_OPTIONS
from ekd_plugins.distillers.pairs import DKD_DEFAULT_BETA, dkd_beta_for
from ekdcli.sdk.contracts import DistillBatch, Distiller
from ekdcli.sdk.errors import JobError
from ekdcli.sdk.losses import kd_loss
from ekdcli.sdk.options import as_bool, as_float, as_pair, check_names, given, owner


def cross_entropy(batch: DistillBatch) -> torch.Tensor:
    """CE on the raw student logits, in float32 at least."""
    return F.cross_entropy(upcast(batch.student_logits), batch.labels.long())


def teacher_logits_of(batch: DistillBatch, method: str) -> torch.Tensor:
    if batch.teacher_logits is None:
        raise JobError(f"distiller {method!r} got no teacher logits; run it with a --teacher.")
    return batch.teacher_logits


def distillation_inputs(
    batch: DistillBatch, method: str, logit_standardize: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(student, teacher) logits for the distillation term, upcast and optionally standardized."""
    student, teacher = upcast(batch.student_logits), upcast(teacher_logits_of(batch, method))
    if logit_standardize:
        return standardize_logits(student), standardize_logits(teacher)
    return student, teacher


def resolve_beta(method: str, options: dict[str, Any]) -> tuple[float, str, tuple[str, str] | None]:
    """DKD's beta: given, else the configured beta of a known pair, else mdistiller's default."""
    pair = as_pair(method, options.get("pair"))
    if given(options, "beta"):
        return as_float(method, "beta", options["beta"], non_negative=True), "given", pair
    known = dkd_beta_for(pair)
    if known is not None and pair is not None:
        return known, f"DKD config of {pair[0]}->{pair[1]}", pair
    return DKD_DEFAULT_BETA, "default", pair


class CEDistiller(Distiller):
    """Plain cross-entropy: teachers and student baselines."""

    name = "ce"
    needs_teacher = False

    def __call__(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        return {"ce": cross_entropy(batch)}


class KDDistiller(Distiller):
    """``w_ce * CE + w_kd * mean_i T^2 KL(softmax(z_t/T) || softmax(z_s/T))``."""

    name = "kd"

    def __init__(self, t: float, w_ce: float, w_kd: float, logit_standardize: bool) -> None:
        self.t, self.w_ce, self.w_kd, self.logit_standardize = t, w_ce, w_kd, logit_standardize

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "t": self.t,
            "w_ce": self.w_ce,
            "w_kd": self.w_kd,
            "logit_standardize": self.logit_standardize,
        }

    def __call__(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        student, teacher = distillation_inputs(batch, self.name, self.logit_standardize)
        return {"ce": self.w_ce * cross_entropy(batch), "kd": self.w_kd * kd_loss(student, teacher, self.t)}


class DKDDistiller(Distiller):
    """``w_ce * CE + warm * (alpha * TCKD + beta * NCKD)``, ``warm = min(epoch / warmup, 1)``."""

    name = "dkd"

    def __init__(
        self,
        t: float,
        alpha: float,
        beta: float,
        warmup: float,
        w_ce: float,
        logit_standardize: bool,
        beta_source: str = "given",
    ) -> None:
        self.t, self.alpha, self.beta, self.warmup = t, alpha, beta, warmup
        self.w_ce, self.logit_standardize, self.beta_source = w_ce, logit_standardize, beta_source

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "t": self.t,
            "alpha": self.alpha,
            "beta": self.beta,
            "beta_source": self.beta_source,
            "warmup": self.warmup,
            "w_ce": self.w_ce,
            "logit_standardize": self.logit_standardize,
        }

    def __call__(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        student, teacher = distillation_inputs(batch, self.name, self.logit_standardize)
        tckd, nckd = dkd_terms(student, teacher, batch.labels, self.t)
        warm = warmup_factor(batch.epoch, self.warmup)
        return {
            "ce": self.w_ce * cross_entropy(batch),
            "tckd": warm * self.alpha * tckd,
            "nckd": warm * self.beta * nckd,
        }


# ------------------------------------------------------------------ factories
WHO = {name: owner("distiller", name) for name in ("ce", "kd", "dkd")}


def make_ce(**options: Any) -> CEDistiller:
    check_names(WHO["ce"], options, CE_OPTIONS)
    return CEDistiller()


def make_kd(**options: Any) -> KDDistiller:
    check_names(WHO["kd"], options, KD_OPTIONS)
    opts = {**KD_OPTIONS, **{k: v for k, v in options.items() if v is not None}}
    return KDDistiller(
        t=as_float(WHO["kd"], "t", opts["t"], positive=True),
        w_ce=as_float(WHO["kd"], "w_ce", opts["w_ce"], non_negative=True),
        w_kd=as_float(WHO["kd"], "w_kd", opts["w_kd"], non_negative=True),
        logit_standardize=as_bool(WHO["kd"], "logit_standardize", opts["logit_standardize"]),
    )


def make_dkd(**options: Any) -> DKDDistiller:
    check_names(WHO["dkd"], options, DKD_OPTIONS)
    opts = {**DKD_OPTIONS, **{k: v for k, v in options.items() if v is not None}}
    beta, beta_source, _ = resolve_beta(WHO["dkd"], opts)
    return DKDDistiller(
        t=as_float(WHO["dkd"], "t", opts["t"], positive=True),
        alpha=as_float(WHO["dkd"], "alpha", opts["alpha"], non_negative=True),
        beta=beta,
        warmup=as_float(WHO["dkd"], "warmup", opts["warmup"], non_negative=True),
        w_ce=as_float(WHO["dkd"], "w_ce", opts["w_ce"], non_negative=True),
        logit_standardize=as_bool(WHO["dkd"], "logit_standardize", opts["logit_standardize"]),
        beta_source=beta_source,
    )

"""Cross-entropy, KD (Hinton et al.) and DKD (Zhao et al., CVPR 2022), each with a temperature rule.

Each ``__call__`` returns the named, already weighted loss terms; the engine
sums them.  CE always sees the raw logits; with ``logit_standardize`` the
distillation terms see z-scored teacher and student logits (Sun et al., CVPR 2024).
KD and DKD take their temperatures from a rule (``fixed`` by default); Energy KD and Energy
DKD are the same classes with the ``energy`` rule (:mod:`ekd_plugins.distillers.energy_kd`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ekd_plugins.distillers.functional import dkd_terms, standardize_logits, upcast, warmup_factor
from ekd_plugins.distillers.options import CEOptions, DKDLoss, DKDOptions, KDLoss, KDOptions
from ekd_plugins.pairs import DKD_DEFAULT_BETA, dkd_beta_for
from ekdcli.sdk.contracts import DistillBatch, Distiller, LossSummary, TemperatureDistiller, TemperatureRule
from ekdcli.sdk.errors import JobError
from ekdcli.sdk.losses import kd_loss
from ekdcli.sdk.options import as_float, as_pair, check_names, given, option_names, owner, read_options
from ekdcli.sdk.temperature import split_rule_options


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


class KDDistiller(TemperatureDistiller):
    """``w_ce * CE + w_kd * mean_i T_i^2 KL(softmax(z_t/T_i) || softmax(z_s/T_i))``, ``T_i`` from the rule."""

    def __init__(
        self, rule: TemperatureRule, w_ce: float, w_kd: float, logit_standardize: bool, name: str = "kd"
    ) -> None:
        super().__init__(rule)
        self.name, self.w_ce, self.w_kd, self.logit_standardize = name, w_ce, w_kd, logit_standardize

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            **self.describe_rule(),
            "w_ce": self.w_ce,
            "w_kd": self.w_kd,
            "logit_standardize": self.logit_standardize,
        }

    def __call__(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        temps = self.temperatures(batch)
        student, teacher = distillation_inputs(batch, self.name, self.logit_standardize)
        return {"ce": self.w_ce * cross_entropy(batch), "kd": self.w_kd * kd_loss(student, teacher, temps)}


class DKDDistiller(TemperatureDistiller):
    """``w_ce * CE + warm * (alpha * TCKD + beta * NCKD)``, ``warm = min(epoch / warmup, 1)``; TCKD and
    NCKD of row i at the rule's ``T_i``, each scaled by ``T_i^2``, then the batch mean."""

    def __init__(
        self,
        rule: TemperatureRule,
        alpha: float,
        beta: float,
        warmup: float,
        w_ce: float,
        logit_standardize: bool,
        beta_source: str = "given",
        name: str = "dkd",
    ) -> None:
        super().__init__(rule)
        self.name, self.alpha, self.beta, self.warmup = name, alpha, beta, warmup
        self.w_ce, self.logit_standardize, self.beta_source = w_ce, logit_standardize, beta_source

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            **self.describe_rule(),
            "alpha": self.alpha,
            "beta": self.beta,
            "beta_source": self.beta_source,
            "warmup": self.warmup,
            "w_ce": self.w_ce,
            "logit_standardize": self.logit_standardize,
        }

    def summary(self) -> LossSummary:
        """``dkd (alpha 1, beta 8), T 4``: the rule's summary with DKD's two weights."""
        out = super().summary()
        head = f"{self.name} (alpha {self.alpha:g}, beta {self.beta:g})"
        return LossSummary(head + out.text.removeprefix(self.name), out.rule)

    def __call__(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        temps = self.temperatures(batch)
        student, teacher = distillation_inputs(batch, self.name, self.logit_standardize)
        tckd, nckd = dkd_terms(student, teacher, batch.labels, temps)
        warm = warmup_factor(batch.epoch, self.warmup)
        return {
            "ce": self.w_ce * cross_entropy(batch),
            "tckd": warm * self.alpha * tckd,
            "nckd": warm * self.beta * nckd,
        }


# ------------------------------------------------------------------ factories
def make_ce(**options: Any) -> CEDistiller:
    read_options(owner("distiller", "ce"), CEOptions, options)
    return CEDistiller()


def own_options(who: str, loss: type, own: dict[str, Any]) -> dict[str, Any]:
    """The loss record's options among ``own`` (what the rule left), read and checked by the record."""
    return read_options(who, loss, {k: v for k, v in own.items() if k in option_names(loss)})


def build_kd(
    name: str, default_rule: str, valid: type, rule: TemperatureRule | None, options: dict[str, Any]
) -> KDDistiller:
    """KD under ``name`` (kd, energy_kd) with ``rule``, else its default rule built from ``options``."""
    who = owner("distiller", name)
    check_names(who, options, option_names(valid))
    rule, own = split_rule_options(who, rule, default_rule, options)
    opts = own_options(who, KDLoss, own)
    return KDDistiller(rule, opts["w_ce"], opts["w_kd"], opts["logit_standardize"], name=name)


def build_dkd(
    name: str, default_rule: str, valid: type, rule: TemperatureRule | None, options: dict[str, Any]
) -> DKDDistiller:
    """DKD under ``name`` (dkd, energy_dkd) with ``rule``, else its default rule built from ``options``."""
    who = owner("distiller", name)
    check_names(who, options, option_names(valid))
    rule, own = split_rule_options(who, rule, default_rule, options)
    opts = own_options(who, DKDLoss, own)
    beta, beta_source, _ = resolve_beta(who, opts)
    return DKDDistiller(
        rule,
        alpha=opts["alpha"],
        beta=beta,
        warmup=opts["warmup"],
        w_ce=opts["w_ce"],
        logit_standardize=opts["logit_standardize"],
        beta_source=beta_source,
        name=name,
    )


def make_kd(*, temperature_rule: TemperatureRule | None = None, **options: Any) -> KDDistiller:
    return build_kd("kd", "fixed", KDOptions, temperature_rule, options)


def make_dkd(*, temperature_rule: TemperatureRule | None = None, **options: Any) -> DKDDistiller:
    return build_dkd("dkd", "fixed", DKDOptions, temperature_rule, options)

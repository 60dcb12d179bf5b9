"""Energy KD and Energy DKD: KD / DKD with a per-sample temperature from the teacher's energy."""

from __future__ import annotations

from typing import Any

import torch

from ekd_plugins.distillers.functional import dkd_terms, warmup_factor
from ekd_plugins.distillers.logit import cross_entropy, distillation_inputs, resolve_beta
from ekd_plugins.distillers.options import ENERGY_DKD_OPTIONS, ENERGY_KD_OPTIONS, RULE_OPTIONS
from ekd_plugins.distillers.temperature import TemperatureRule
from ekdcli.sdk.contracts import DistillBatch, Distiller, EnergyContext
from ekdcli.sdk.losses import kd_loss
from ekdcli.sdk.options import as_bool, as_float, as_pair, check_names, owner


class _EnergyDistiller(Distiller):
    """Shared plumbing: the temperature rule, its setup and the per-batch temperature counts."""

    needs_energy = True

    def __init__(self, rule: TemperatureRule, w_ce: float, logit_standardize: bool) -> None:
        self.rule, self.w_ce, self.logit_standardize = rule, w_ce, logit_standardize

    def setup(self, energy: EnergyContext | None, num_epochs: int) -> None:
        self.rule.setup(energy)

    def _temperatures(self, batch: DistillBatch) -> torch.Tensor:
        temps, groups = self.rule.assign(batch.indices, batch.teacher_logits)
        for key, count in self.rule.stats(groups).items():
            batch.stats[key] = batch.stats.get(key, 0.0) + count
        return temps

    def _loss_weights(self) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, **self.rule.describe(), **self._loss_weights()}


class EnergyKDDistiller(_EnergyDistiller):
    """``w_ce * CE + w_kd * mean_i T_i^2 KL(softmax(z_t/T_i) || softmax(z_s/T_i))``."""

    name = "energy_kd"

    def __init__(self, rule: TemperatureRule, w_ce: float, w_kd: float, logit_standardize: bool) -> None:
        super().__init__(rule, w_ce, logit_standardize)
        self.w_kd = w_kd

    def _loss_weights(self) -> dict[str, Any]:
        return {"w_ce": self.w_ce, "w_kd": self.w_kd, "logit_standardize": self.logit_standardize}

    def __call__(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        temps = self._temperatures(batch)
        student, teacher = distillation_inputs(batch, self.name, self.logit_standardize)
        return {"ce": self.w_ce * cross_entropy(batch), "kd": self.w_kd * kd_loss(student, teacher, temps)}


class EnergyDKDDistiller(_EnergyDistiller):
    """DKD with ``T_i`` in TCKD and NCKD, each scaled by ``T_i^2``, then the batch mean."""

    name = "energy_dkd"

    def __init__(
        self,
        rule: TemperatureRule,
        alpha: float,
        beta: float,
        warmup: float,
        w_ce: float,
        logit_standardize: bool,
        beta_source: str = "given",
    ) -> None:
        super().__init__(rule, w_ce, logit_standardize)
        self.alpha, self.beta, self.warmup, self.beta_source = alpha, beta, warmup, beta_source

    def _loss_weights(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "beta": self.beta,
            "beta_source": self.beta_source,
            "warmup": self.warmup,
            "w_ce": self.w_ce,
            "logit_standardize": self.logit_standardize,
        }

    def __call__(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        temps = self._temperatures(batch)
        student, teacher = distillation_inputs(batch, self.name, self.logit_standardize)
        tckd, nckd = dkd_terms(student, teacher, batch.labels, temps)
        warm = warmup_factor(batch.epoch, self.warmup)
        return {
            "ce": self.w_ce * cross_entropy(batch),
            "tckd": warm * self.alpha * tckd,
            "nckd": warm * self.beta * nckd,
        }


# ------------------------------------------------------------------ factories
def _rule(method: str, options: dict[str, Any]) -> TemperatureRule:
    rule_options = {name: options.get(name) for name in RULE_OPTIONS}
    return TemperatureRule(method, rule_options, pair=as_pair(method, options.get("pair")))


def make_energy_kd(**options: Any) -> EnergyKDDistiller:
    m = owner("distiller", "energy_kd")
    check_names(m, options, ENERGY_KD_OPTIONS)
    rule = _rule(m, options)
    opts = {**ENERGY_KD_OPTIONS, **{k: v for k, v in options.items() if v is not None}}
    return EnergyKDDistiller(
        rule,
        w_ce=as_float(m, "w_ce", opts["w_ce"], non_negative=True),
        w_kd=as_float(m, "w_kd", opts["w_kd"], non_negative=True),
        logit_standardize=as_bool(m, "logit_standardize", opts["logit_standardize"]),
    )


def make_energy_dkd(**options: Any) -> EnergyDKDDistiller:
    m = owner("distiller", "energy_dkd")
    check_names(m, options, ENERGY_DKD_OPTIONS)
    rule = _rule(m, options)
    opts = {**ENERGY_DKD_OPTIONS, **{k: v for k, v in options.items() if v is not None}}
    beta, beta_source, _ = resolve_beta(m, opts)
    return EnergyDKDDistiller(
        rule,
        alpha=as_float(m, "alpha", opts["alpha"], non_negative=True),
        beta=beta,
        warmup=as_float(m, "warmup", opts["warmup"], non_negative=True),
        w_ce=as_float(m, "w_ce", opts["w_ce"], non_negative=True),
        logit_standardize=as_bool(m, "logit_standardize", opts["logit_standardize"]),
        beta_source=beta_source,
    )

"""MLKD: multi-level logit distillation (Jin, Wang and Lin, CVPR 2023), as the authors' code computes it.

Per batch the student and the teacher see the usual (weak) view and a strongly augmented view
of each image (the engine makes it: ``needs_strong_view``).  With the five temperatures
``T_l = T * (1, 0.75, 1.25, 0.5, 1.5)`` (the authors' 4, 3, 5, 2, 6 at ``T = 4``; ``T`` per
sample from the temperature rule):

* instance alignment ``I_l = mean_i T_l^2 KL(p_t || p_s)`` (KD at ``T_l``);
* class alignment ``C_l = ||P_t^T P_t - P_s^T P_s||_F^2 / K`` over the ``[B, K]`` softmax matrices;
* batch alignment ``B_l = ||P_t P_t^T - P_s P_s^T||_F^2 / B``.

Confidence masking as released (``KD_ours.py``): the per-sample mask ``conf_i <= median(conf)``
(``conf`` = the teacher's top weak-view probability) multiplies a batch-mean loss, so it acts as
its fraction ``m``; the class mask ``c`` likewise over the teacher's summed class probabilities.
Loss terms (``w`` = ``w_kd``)::

    ce = w_ce * (CE(weak) + CE(strong))
    kd = w * m * sum_l I_l(weak) + w * (sum_{l<3} I_l(strong) + sum_{l>=3} I_l(weak))
    cc = w * c * sum_l C_l(weak)
    bc = w * m * sum_l B_l(weak)

The released code's "strong" sum takes its last two terms (T = 2, 6) from the weak view, and
computes class and batch terms of the strong view without using them; ekd keeps both so that
its numbers are the authors'.  ``logit_standardize`` z-scores the logits of the instance terms
(as the logit-standardization authors' MLKD does).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ekd_plugins.distillers.functional import standardize_logits, upcast
from ekd_plugins.distillers.logit import cross_entropy, teacher_logits_of
from ekd_plugins.distillers.options import MLKDLoss, MLKDOptions
from ekdcli.sdk.contracts import DistillBatch, TemperatureDistiller, TemperatureRule
from ekdcli.sdk.errors import JobError
from ekdcli.sdk.losses import kd_loss, per_sample_temperature
from ekdcli.sdk.options import check_names, option_names, owner, read_options
from ekdcli.sdk.temperature import split_rule_options

# MLKD's temperatures 4, 3, 5, 2, 6 as multiples of its base temperature 4.
LADDER = (1.0, 0.75, 1.25, 0.5, 1.5)
# The released "strong" instance sum uses the strong view for its first three temperatures only.
STRONG_TERMS = 3

Temperature = float | torch.Tensor


def _probabilities(logits: torch.Tensor, temperature: Temperature) -> torch.Tensor:
    z = upcast(logits)
    return F.softmax(z / per_sample_temperature(temperature, z.shape[0], z), dim=1)


def class_alignment(student: torch.Tensor, teacher: torch.Tensor, temperature: Temperature) -> torch.Tensor:
    """``||P_t^T P_t - P_s^T P_s||_F^2 / K``: the ``[K, K]`` class-correlation matrices."""
    p_s = _probabilities(student, temperature)
    p_t = _probabilities(teacher, temperature).to(p_s.dtype)
    return ((p_t.T @ p_t - p_s.T @ p_s) ** 2).sum() / p_s.shape[1]


def batch_alignment(student: torch.Tensor, teacher: torch.Tensor, temperature: Temperature) -> torch.Tensor:
    """``||P_t P_t^T - P_s P_s^T||_F^2 / B``: the ``[B, B]`` sample-similarity matrices."""
    p_s = _probabilities(student, temperature)
    p_t = _probabilities(teacher, temperature).to(p_s.dtype)
    return ((p_t @ p_t.T - p_s @ p_s.T) ** 2).sum() / p_s.shape[0]


def _total(terms: list[torch.Tensor]) -> torch.Tensor:
    """The terms added left to right (the released code's order)."""
    out = terms[0]
    for term in terms[1:]:
        out = out + term
    return out


def masked_fractions(teacher_weak: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(m, c)``: the share of samples whose teacher confidence is at most its batch median, and
    the share of classes whose summed teacher probability is at most its median (numpy's linear
    percentile, as released)."""
    probs = F.softmax(upcast(teacher_weak).detach(), dim=1)
    confidence = probs.max(dim=1).values
    per_class = probs.sum(dim=0)
    m = (confidence <= torch.quantile(confidence, 0.5)).to(probs.dtype).mean()
    c = (per_class <= torch.quantile(per_class, 0.5)).to(probs.dtype).mean()
    return m, c


class MLKDDistiller(TemperatureDistiller):
    """The four released loss terms ``ce``, ``kd``, ``cc``, ``bc`` (module docstring)."""

    name = "mlkd"
    needs_strong_view = True

    def __init__(self, rule: TemperatureRule, w_ce: float, w_kd: float, logit_standardize: bool) -> None:
        super().__init__(rule)
        self.w_ce, self.w_kd, self.logit_standardize = w_ce, w_kd, logit_standardize

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            **self.describe_rule(),
            "ladder": list(LADDER),
            "w_ce": self.w_ce,
            "w_kd": self.w_kd,
            "logit_standardize": self.logit_standardize,
        }

    def _instance(
        self, student: torch.Tensor, teacher: torch.Tensor, temperature: Temperature
    ) -> torch.Tensor:
        if self.logit_standardize:
            student, teacher = standardize_logits(student), standardize_logits(teacher)
        return kd_loss(student, teacher, temperature)

    def __call__(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        if batch.strong_student_logits is None or batch.strong_teacher_logits is None:
            raise JobError("distiller 'mlkd' got no strong view; run it with ekd distill (it makes one).")
        base = self.temperatures(batch)
        temps = [base * scale for scale in LADDER]
        sw, tw = batch.student_logits, teacher_logits_of(batch, self.name)
        ss, ts = batch.strong_student_logits, batch.strong_teacher_logits
        m, c = masked_fractions(tw)
        weak = _total([self._instance(sw, tw, t) for t in temps])
        strong_views = [(ss, ts)] * STRONG_TERMS + [(sw, tw)] * (len(temps) - STRONG_TERMS)
        strong = _total(
            [self._instance(s, t, temp) for (s, t), temp in zip(strong_views, temps, strict=True)]
        )
        w = self.w_kd
        ce = cross_entropy(batch) + F.cross_entropy(upcast(ss), batch.labels.long())
        return {
            "ce": self.w_ce * ce,
            "kd": w * m * weak + w * strong,
            "cc": w * c * _total([class_alignment(sw, tw, t) for t in temps]),
            "bc": w * m * _total([batch_alignment(sw, tw, t) for t in temps]),
        }


def make_mlkd(*, temperature_rule: TemperatureRule | None = None, **options: Any) -> MLKDDistiller:
    who = owner("distiller", "mlkd")
    check_names(who, options, option_names(MLKDOptions))
    rule, own = split_rule_options(who, temperature_rule, "fixed", options)
    opts = read_options(who, MLKDLoss, own)
    return MLKDDistiller(rule, opts["w_ce"], opts["w_kd"], opts["logit_standardize"])

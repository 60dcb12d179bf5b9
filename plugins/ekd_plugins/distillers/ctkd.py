"""CTKD: curriculum temperature for knowledge distillation (Li et al., AAAI 2023).

KD at a learned temperature ``tau = t_start + t_range * sigmoid(g)`` (released code: 1 + 20 *
sigmoid), where ``g`` is one learnable number (``variant = "global"``, the released
``Global_T``, initialised to 1) or, per sample, the output of a 2-layer MLP over the
(detached) teacher and student logits (``variant = "instance"``, the paper's instance-wise
module; the released code ships only the global one).  ``g`` passes a gradient reversal layer:
forward is the identity, backward multiplies the gradient by ``-lambda``, so the temperature
module *maximises* the distillation loss the student minimises.  ``lambda`` follows the cosine
curriculum over the (1-based) epochs ``n``::

    lambda_n = lambda_min + (lambda_max - lambda_min) * (1 - cos(pi * min(n, E) / E)) / 2

(released: ``decay_max = 0, decay_min = -1, decay_loops = 10``, i.e. lambda from 0 to 1 over
E = 10 epochs).  The module is trained by the student's optimizer (same learning rate schedule,
momentum and weight decay, as the released code's SGD over ``[student, Global_T]``) and
checkpointed with the run.

With a temperature rule other than ``fixed``, sample ``i`` distils at ``tau_i * T_i / T_ref``:
the rule's per-sample temperature relative to its reference rescales the learned one (with
``fixed``, ``T_i / T_ref = 1``: plain CTKD).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ekd_plugins.distillers.functional import standardize_logits, upcast
from ekd_plugins.distillers.logit import cross_entropy, teacher_logits_of
from ekd_plugins.distillers.options import CTKDOptions
from ekdcli.sdk.contracts import DistillBatch, TemperatureDistiller, TemperatureRule
from ekdcli.sdk.errors import JobError
from ekdcli.sdk.losses import kd_loss
from ekdcli.sdk.options import as_int, check_names, option_names, owner, read_options
from ekdcli.sdk.temperature import split_rule_options

VARIANTS = ("global", "instance")


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``-lambda`` (Ganin & Lempitsky)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = lam
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lam * grad, None


def reverse_gradient(x: torch.Tensor, lam: float) -> torch.Tensor:
    return GradientReversal.apply(x, lam)


def curriculum_lambda(epoch: int, lambda_min: float, lambda_max: float, epochs: int) -> float:
    """The cosine curriculum: ``lambda_min`` before training, ``lambda_max`` from epoch ``epochs`` on."""
    n = min(max(epoch, 0), epochs)
    return lambda_min + (lambda_max - lambda_min) * (1.0 - math.cos(math.pi * n / epochs)) / 2.0


class GlobalTemperature(nn.Module):
    """One learnable number for every sample (released ``Global_T``: initialised to 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.ones(1))

    def forward(self, teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
        return self.value.reshape(())


class InstanceTemperature(nn.Module):
    """A 2-layer MLP from the concatenated (detached) teacher and student logits to one number per sample."""

    def __init__(self, num_classes: int, hidden: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(2 * num_classes, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
        x = torch.cat([teacher.detach(), student.detach()], dim=1).to(self.hidden.weight.dtype)
        return self.out(torch.relu(self.hidden(x))).squeeze(1)


class CTKDDistiller(TemperatureDistiller):
    """``w_ce * CE + w_kd * mean_i tau_i^2 KL(softmax(z_t/tau_i) || softmax(z_s/tau_i))`` (module docstring)."""

    name = "ctkd"

    def __init__(self, rule: TemperatureRule, module: nn.Module | None, settings: dict[str, Any]) -> None:
        super().__init__(rule)
        self._module, self.settings = module, settings

    @property
    def module(self) -> nn.Module:
        if self._module is None:
            raise JobError("the instance variant of 'ctkd' needs num_classes; pass the number of classes.")
        return self._module

    # ----------------------------------------------------------- trainable state
    def to(self, device: torch.device) -> None:
        self.module.to(device)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.module.parameters())

    def state_dict(self) -> dict[str, Any]:
        return {"module": {k: v.detach().clone() for k, v in self.module.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "module" in state:
            self.module.load_state_dict(state["module"])

    # ------------------------------------------------------------------- loss
    def learned_temperature(
        self, batch: DistillBatch, student: torch.Tensor, teacher: torch.Tensor
    ) -> torch.Tensor:
        """``tau`` (0-d for the global variant, ``[B]`` per sample) with the reversed gradient."""
        s = self.settings
        lam = curriculum_lambda(batch.epoch, s["lambda_min"], s["lambda_max"], s["lambda_epochs"])
        raw = reverse_gradient(self.module(teacher, student), lam)
        return s["t_start"] + s["t_range"] * torch.sigmoid(raw.float() if raw.dtype != torch.float64 else raw)

    def __call__(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        factor = self.temperatures(batch)
        student, teacher = upcast(batch.student_logits), upcast(teacher_logits_of(batch, self.name))
        tau = self.learned_temperature(batch, student, teacher)
        if not (isinstance(factor, float) and factor == self.rule.reference):
            tau = tau * (torch.as_tensor(factor, device=tau.device, dtype=tau.dtype) / self.rule.reference)
        if self.settings["logit_standardize"]:
            student, teacher = standardize_logits(student), standardize_logits(teacher)
        kd = kd_loss(student, teacher, tau.to(student.dtype))
        # summed over the epoch's steps by the engine: divide by the steps for the mean temperature
        batch.stats["ctkd_tau_sum"] = tau.detach().float().mean()
        return {"ce": self.settings["w_ce"] * cross_entropy(batch), "kd": self.settings["w_kd"] * kd}

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.name, **self.describe_rule(), **self.settings}
        if isinstance(self._module, GlobalTemperature):
            raw = float(self._module.value.detach().cpu())
            out["learned_t"] = self.settings["t_start"] + self.settings["t_range"] / (1.0 + math.exp(-raw))
        return out


def make_ctkd(
    *, temperature_rule: TemperatureRule | None = None, num_classes: int | None = None, **options: Any
) -> CTKDDistiller:
    """CTKD; the instance variant's MLP needs ``num_classes`` (ekd distill passes the dataset's)."""
    who = owner("distiller", "ctkd")
    check_names(who, options, option_names(CTKDOptions))
    rule, own = split_rule_options(who, temperature_rule, "fixed", options)
    settings = read_options(who, CTKDOptions, own)
    module: nn.Module | None = GlobalTemperature()
    if settings["variant"] == "instance":
        classes = None if num_classes is None else as_int(who, "num_classes", num_classes, minimum=2)
        module = None if classes is None else InstanceTemperature(classes, settings["hidden"])
    return CTKDDistiller(rule, module, settings)

"""The ``fixed`` rule: one temperature for every sample (Hinton KD's and DKD's T)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ekd_plugins.temperature_rules.options import FIXED_OPTIONS
from ekdcli.sdk.contracts import RuleSummary, TemperatureRule
from ekdcli.sdk.options import as_float, check_names, owner, pick

if TYPE_CHECKING:
    import torch


class FixedTemperature(TemperatureRule):
    """``T_i = t`` for every sample; the batch gets the plain float (the scalar code path of the losses)."""

    name = "fixed"

    def __init__(self, t: float) -> None:
        self.t = self.reference = t

    def __call__(
        self,
        teacher_logits: torch.Tensor | None,
        indices: torch.Tensor,
        stats: dict[str, float | torch.Tensor],
    ) -> float:
        return self.t

    def describe(self) -> dict[str, Any]:
        return {"t": self.t}

    def summary(self) -> RuleSummary:
        return RuleSummary(f"T {self.t:g}", {"all": self.t})


def make_fixed(**options: Any) -> FixedTemperature:
    who = owner("temperature rule", "fixed")
    check_names(who, options, FIXED_OPTIONS)
    return FixedTemperature(as_float(who, "t", pick(options, "t", FIXED_OPTIONS["t"]), positive=True))

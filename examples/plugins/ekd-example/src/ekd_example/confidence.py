"""A temperature rule of a third party, in one file: the teacher's confidence sets each sample's T.

``T_i = t_min + (t_max - t_min) * p_i`` where ``p_i`` is the teacher's top softmax probability of
the sample: a confident teacher gets a smoother target (as the energy rule's paper preset gives
low-energy samples the higher temperature), an unsure one a sharper target.  It reads only the
batch's teacher logits, so it needs no score file.  ``ekd distill --method kd --temperature-rule
confidence --set temperature.t_max=8`` uses it with any temperature-based method.
"""

from __future__ import annotations

from typing import Any

import torch

from ekdcli.sdk import TemperatureRule, UsageError, as_float, check_names, owner, pick

OPTIONS = {"t_min": 2.0, "t_max": 6.0}


class ConfidenceTemperature(TemperatureRule):
    name = "confidence"

    def __init__(self, t_min: float, t_max: float) -> None:
        self.t_min, self.t_max = t_min, t_max
        self.reference = (t_min + t_max) / 2

    def __call__(
        self, teacher_logits: torch.Tensor | None, indices: torch.Tensor, stats: dict[str, Any]
    ) -> torch.Tensor:
        if teacher_logits is None:
            raise UsageError(
                "temperature rule 'confidence' needs the teacher's logits; run it with a --teacher."
            )
        confidence = torch.softmax(teacher_logits.float(), dim=1).amax(dim=1)
        temps = self.t_min + (self.t_max - self.t_min) * confidence
        stats["confidence_t_sum"] = stats.get("confidence_t_sum", 0.0) + temps.sum().detach()
        return temps

    def describe(self) -> dict[str, Any]:
        return {"t_min": self.t_min, "t_max": self.t_max}


def make_confidence(**options: Any) -> ConfidenceTemperature:
    who = owner("temperature rule", "confidence")
    check_names(who, options, OPTIONS)
    t_min = as_float(who, "t_min", pick(options, "t_min", OPTIONS["t_min"]), positive=True)
    t_max = as_float(who, "t_max", pick(options, "t_max", OPTIONS["t_max"]), positive=True)
    if t_min > t_max:
        raise UsageError(f"option 't_min' of {who} must not exceed 't_max', got {t_min} > {t_max}.")
    return ConfidenceTemperature(t_min, t_max)

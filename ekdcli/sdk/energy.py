"""Energy scores and the partitions built from them (docs/method.md#energy-score, #thresholds-and-partitions).

``E(x) = -T_E * logsumexp(z(x) / T_E)``: low energy = confident teacher.
Thresholds follow the authors' released indexing; the comparison rule for the
low side is selectable (``released``: ``E < E_low``; ``paper``: ``E <= E_low``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

LowRule = Literal["released", "paper"]
LOW_RULES: tuple[LowRule, ...] = ("released", "paper")

# T_E, the temperature of the energy score: the paper's and the released code's value.
ENERGY_TEMPERATURE = 4.0
# Temperature gradation: the most energy segments ``ekd partition`` and the energy distillers take
# (the paper uses 10; each segment adds a temperature and a count to every run summary).
MAX_SEGMENTS = 100


def as_low_rule(value: str) -> LowRule:
    """A checked low-side comparison rule (``released``: ``E < E_low``; ``paper``: ``E <= E_low``)."""
    if value == "released":
        return "released"
    if value == "paper":
        return "paper"
    raise ValueError(f"low_rule must be one of {', '.join(LOW_RULES)}, got {value!r}")


def energy(logits: torch.Tensor, temperature: float = ENERGY_TEMPERATURE) -> torch.Tensor:
    """Per-row energy in float32, stable for extreme logits (no exp overflow)."""
    import torch

    return -temperature * torch.logsumexp(logits.float() / temperature, dim=-1)


@dataclass(frozen=True)
class Thresholds:
    """``low``/``high`` energy thresholds for rates ``low_rate``/``high_rate``."""

    low: float
    high: float
    low_rate: float
    high_rate: float
    low_rule: LowRule = "released"

    def is_low(self, energies: torch.Tensor) -> torch.Tensor:
        return energies <= self.low if self.low_rule == "paper" else energies < self.low

    def is_high(self, energies: torch.Tensor) -> torch.Tensor:
        return energies > self.high

    def as_dict(self) -> dict[str, float | str]:
        return {
            "low": self.low,
            "high": self.high,
            "low_rate": self.low_rate,
            "high_rate": self.high_rate,
            "low_rule": self.low_rule,
        }


def compute_thresholds(
    energies: torch.Tensor, low_rate: float, high_rate: float, low_rule: LowRule = "released"
) -> Thresholds:
    """Thresholds from the sorted energies of the whole training set.

    ``E_low = E_sorted[floor(N*low_rate)]`` and
    ``E_high = E_sorted[N - floor(N*high_rate) - 1]``.  Where an index falls
    outside the array (a rate of 1.0) the threshold becomes +/-inf so that the
    set is everything, instead of wrapping around as the released code does.
    A rate of 0 gives an empty set.
    """
    import torch

    ordered = torch.sort(energies.detach().float().flatten().cpu()).values
    n = ordered.numel()
    if n == 0:
        raise ValueError("cannot compute energy thresholds of an empty set")
    k_low = math.floor(n * low_rate)
    k_high = math.floor(n * high_rate)
    low = float(ordered[k_low]) if k_low < n else math.inf
    j = n - k_high - 1
    high = float(ordered[j]) if j >= 0 else -math.inf
    return Thresholds(low=low, high=high, low_rate=low_rate, high_rate=high_rate, low_rule=low_rule)


def segment_edges(energies: torch.Tensor, segments: int) -> torch.Tensor:
    """``segments - 1`` ascending edges splitting the energies into equal-count segments.

    Edge ``k`` is ``E_sorted[floor(N*k/segments)]``; see :func:`segment_of`.
    """
    import torch

    if segments < 1:
        raise ValueError("the number of segments must be at least 1")
    ordered = torch.sort(energies.detach().float().flatten().cpu()).values
    n = ordered.numel()
    positions = [math.floor(n * k / segments) for k in range(1, segments)]
    return ordered[positions] if positions else ordered[:0]


def segment_of(energies: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Segment number (0 = lowest energy) of each energy: the count of edges ``<= E``."""
    import torch

    return torch.bucketize(energies.float(), edges.to(energies.device), right=True)

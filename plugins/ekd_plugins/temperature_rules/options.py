"""The options each temperature rule takes, stated once as option records (torch-free).

The registry derives ``info["options"]`` (the defaults ``ekd list`` shows) and the help from
these records; the rules read their defaults from them.  ``None`` means "not given" and, as a
default, "decided by the preset or the teacher/student pair".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ekdcli.sdk.energy import ENERGY_TEMPERATURE, MAX_SEGMENTS
from ekdcli.sdk.options import defaults, option

GRADATION_SEGMENTS = 10  # Table 4 of the paper


# The options the energy and gradation rules share (one field each, made per record).
def _preset() -> Any:
    return option("paper", "paper (Eq. 9) or official (the released code)", choices=("paper", "official"))


def _source() -> Any:
    return option(None, "static (the score file) or online (this batch); default: the preset's",
                  choices=("static", "online"))  # fmt: skip


def _t_min() -> Any:
    return option(2.0, "the lowest temperature of a gradation", positive=True)


def _t_max() -> Any:
    return option(6.0, "the highest temperature of a gradation", positive=True)


def _energy_temperature() -> Any:
    return option(ENERGY_TEMPERATURE, "T of the energy -T*logsumexp(logits/T)", positive=True)


@dataclass(frozen=True)
class FixedOptions:
    t: float = option(4.0, "the temperature of every sample", positive=True)


@dataclass(frozen=True)
class EnergyOptions:
    preset: str = _preset()
    source: str | None = _source()
    apply: str = option("both", "the sides that get their own temperature", choices=("both", "low", "high"))
    low_rule: str | None = option(
        None,
        "paper (E <= E_low) or released (E < E_low); default: the preset's",
        choices=("paper", "released"),
    )
    rate: float | None = option(None, "both the low and the high rate, in (0, 0.5] (default 0.2)")
    low_rate: float | None = option(None, "the lowest-energy share, in (0, 1); low + high <= 1")
    high_rate: float | None = option(None, "the highest-energy share, in (0, 1); low + high <= 1")
    t: float | None = option(None, "the base temperature (default 4)", kind="float", positive=True)
    t_mid: float | None = option(
        None, "the base temperature (another name of t)", kind="float", positive=True
    )
    t_plus: float | None = option(None, "the low-energy offset from t (paper: +2)", kind="float")
    t_minus: float | None = option(None, "the high-energy offset from t (paper: -2)", kind="float")
    t_low_energy: float | None = option(
        None, "the low-energy temperature itself", kind="float", positive=True
    )
    t_high_energy: float | None = option(
        None, "the high-energy temperature itself", kind="float", positive=True
    )
    segments: int | None = option(
        None, f"equal-count energy segments, 2 to {MAX_SEGMENTS} (gradation)", kind="int", minimum=2,
        maximum=MAX_SEGMENTS,
    )  # fmt: skip
    t_min: float = _t_min()
    t_max: float = _t_max()
    energy_temperature: float = _energy_temperature()
    pair: tuple[str, str] | None = option(
        None, "teacher,student: the released rates of a known pair", kind="pair"
    )


@dataclass(frozen=True)
class GradationOptions:
    preset: str = _preset()
    source: str | None = _source()
    segments: int = option(GRADATION_SEGMENTS, f"equal-count energy segments, 2 to {MAX_SEGMENTS}", minimum=2,
                           maximum=MAX_SEGMENTS)  # fmt: skip
    t_min: float = _t_min()
    t_max: float = _t_max()
    energy_temperature: float = _energy_temperature()


# The defaults as dicts, derived from the records.
FIXED_OPTIONS = defaults(FixedOptions)
ENERGY_OPTIONS = defaults(EnergyOptions)
GRADATION_OPTIONS = defaults(GradationOptions)

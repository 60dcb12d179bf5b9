"""Validation of the options of the mixing augmentations: every mistake is one UsageError sentence.

Values may arrive typed (TOML, Python) or as strings (``--set augmentation.rate=0.5``
when not TOML); numbers and booleans are parsed from strings, anything else is
refused with the list of valid values.  No torch here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ekdcli.util.errors import UsageError, did_you_mean

MODES = ("extra", "replace")
SOURCES = ("static", "online")
LOW_RULES = ("released", "paper")
KINDS = ("cutmix", "mixup")
SELECTIONS = ("all", "high", "low", "mixed")
DEFAULT_ALPHA = {"cutmix": 1.0, "mixup": 0.2}


@dataclass(frozen=True)
class MixOptions:
    """The resolved options of one mixing augmentation."""

    rate: float
    mode: str = "extra"
    source: str = "static"
    alpha: float = 1.0
    kd_weight: float = 1.0
    temperature: float = 4.0
    mixed_ce: bool = False
    low_rule: str = "released"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


VALID_OPTIONS = tuple(MixOptions.__dataclass_fields__)


def _number(name: str, aug: str, value: Any) -> float:
    if isinstance(value, bool):
        raise UsageError(f"option {name!r} of augmentation {aug!r} must be a number, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(
            f"option {name!r} of augmentation {aug!r} must be a number, got {value!r}."
        ) from None
    if not math.isfinite(number):
        raise UsageError(f"option {name!r} of augmentation {aug!r} must be finite, got {value!r}.")
    return number


def _choice(name: str, aug: str, value: Any, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise UsageError(
            f"option {name!r} of augmentation {aug!r} must be one of {valid}, got {value!r}."
            f"{did_you_mean(str(value), choices)}"
        )
    return text


def _flag(name: str, aug: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "yes", "on", "1"}:
        return True
    if text in {"false", "no", "off", "0"}:
        return False
    raise UsageError(f"option {name!r} of augmentation {aug!r} must be true or false, got {value!r}.")


def parse_options(aug: str, kind: str, selection: str, options: dict[str, Any]) -> MixOptions:
    """Check ``options`` of augmentation ``aug`` and fill in the defaults of its kind and selection."""
    unknown = sorted(set(options) - set(VALID_OPTIONS))
    if unknown:
        hints = "".join(did_you_mean(key, VALID_OPTIONS) for key in unknown)
        raise UsageError(
            f"augmentation {aug!r} has no option {', '.join(repr(k) for k in unknown)}; "
            f"valid options are {', '.join(VALID_OPTIONS)}.{hints}"
        )
    default_rate = 1.0 if selection == "all" else 0.2
    rate = _number("rate", aug, options.get("rate", default_rate))
    if not 0.0 < rate <= 1.0:
        raise UsageError(f"option 'rate' of augmentation {aug!r} must be in (0, 1], got {rate!r}.")
    if selection == "all" and rate != 1.0:
        raise UsageError(
            f"augmentation {aug!r} mixes every sample (rate 1.0); use 'he-{kind}', 'le-{kind}' or "
            f"'mixed-{kind}' to augment a fraction {rate!r} chosen by energy."
        )
    alpha = _number("alpha", aug, options.get("alpha", DEFAULT_ALPHA[kind]))
    if alpha <= 0:
        raise UsageError(
            f"option 'alpha' of augmentation {aug!r} must be > 0 (a Beta parameter), got {alpha!r}."
        )
    kd_weight = _number("kd_weight", aug, options.get("kd_weight", 1.0))
    if kd_weight < 0:
        raise UsageError(f"option 'kd_weight' of augmentation {aug!r} must be >= 0, got {kd_weight!r}.")
    temperature = _number("temperature", aug, options.get("temperature", 4.0))
    if temperature <= 0:
        raise UsageError(f"option 'temperature' of augmentation {aug!r} must be > 0, got {temperature!r}.")
    return MixOptions(
        rate=rate,
        mode=_choice("mode", aug, options.get("mode", "extra"), MODES),
        source=_choice("source", aug, options.get("source", "static"), SOURCES),
        alpha=alpha,
        kd_weight=kd_weight,
        temperature=temperature,
        mixed_ce=_flag("mixed_ce", aug, options.get("mixed_ce", False)),
        low_rule=_choice("low_rule", aug, options.get("low_rule", "released"), LOW_RULES),
    )


def default_options(kind: str, selection: str) -> dict[str, Any]:
    """The options an augmentation of this kind and selection gets when none are given."""
    return parse_options(f"{selection}-{kind}", kind, selection, {}).as_dict()

"""Option specifications and validation of the distiller factories (torch-free).

Factories receive options from TOML configs and command-line flags, so values
may arrive as strings; each helper coerces and range-checks one value and
raises :class:`~ekdcli.util.errors.UsageError` with one sentence naming the option,
the bad value and what is accepted.  A value of ``None`` means "not given".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ekdcli.util.errors import UsageError, did_you_mean

# Defaults shown by `ekd list distillers`; None = "taken from the preset / pair".
CE_OPTIONS: dict[str, Any] = {}
KD_OPTIONS: dict[str, Any] = {"t": 4.0, "w_ce": 0.1, "w_kd": 0.9, "logit_standardize": False}
DKD_OPTIONS: dict[str, Any] = {
    "t": 4.0,
    "alpha": 1.0,
    "beta": None,
    "warmup": 20.0,
    "w_ce": 1.0,
    "logit_standardize": False,
    "pair": None,
}
RULE_OPTIONS: dict[str, Any] = {
    "preset": "paper",
    "source": None,
    "apply": "both",
    "low_rule": None,
    "rate": None,
    "low_rate": None,
    "high_rate": None,
    "t": None,
    "t_mid": None,
    "t_plus": None,
    "t_minus": None,
    "t_low_energy": None,
    "t_high_energy": None,
    "segments": None,
    "t_min": 2.0,
    "t_max": 6.0,
    "energy_temperature": 4.0,
}
ENERGY_KD_OPTIONS: dict[str, Any] = {
    "w_ce": 0.1,
    "w_kd": 0.9,
    "logit_standardize": False,
    "pair": None,
    **RULE_OPTIONS,
}
ENERGY_DKD_OPTIONS: dict[str, Any] = {
    "alpha": 1.0,
    "beta": None,
    "warmup": 20.0,
    "w_ce": 1.0,
    "logit_standardize": False,
    "pair": None,
    **RULE_OPTIONS,
}

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def check_names(method: str, options: Mapping[str, Any], valid: Iterable[str]) -> None:
    """Refuse option names the method does not know, listing the valid ones."""
    allowed = sorted(valid)
    unknown = sorted(set(options) - set(allowed))
    if not unknown:
        return
    hint = did_you_mean(unknown[0], allowed) if len(unknown) == 1 else ""
    listed = ", ".join(allowed) if allowed else "none"
    raise UsageError(
        f"Unknown option(s) {', '.join(repr(u) for u in unknown)} for distiller {method!r}; "
        f"valid options are: {listed}.{hint}"
    )


def given(options: Mapping[str, Any], name: str) -> bool:
    return options.get(name) is not None


def as_float(
    method: str,
    name: str,
    value: Any,
    *,
    positive: bool = False,
    non_negative: bool = False,
) -> float:
    """A finite float; ``positive``/``non_negative`` add the range check."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"Option {name!r} of {method!r} must be a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise UsageError(f"Option {name!r} of {method!r} must be a finite number, got {value!r}.")
    if positive and number <= 0:
        raise UsageError(f"Option {name!r} of {method!r} must be greater than 0, got {value!r}.")
    if non_negative and number < 0:
        raise UsageError(f"Option {name!r} of {method!r} must be 0 or more, got {value!r}.")
    return number


def as_int(method: str, name: str, value: Any, *, minimum: int) -> int:
    """An integer of at least ``minimum`` (``"10"`` and ``10.0`` are accepted)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number != int(number) or number < minimum:
        raise UsageError(f"Option {name!r} of {method!r} must be an integer >= {minimum}, got {value!r}.")
    return int(number)


def as_rate(method: str, name: str, value: Any) -> float:
    """A fraction strictly between 0 and 1."""
    rate = as_float(method, name, value)
    if not 0.0 < rate < 1.0:
        raise UsageError(f"Option {name!r} of {method!r} must be between 0 and 1 (exclusive), got {value!r}.")
    return rate


def as_bool(method: str, name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise UsageError(f"Option {name!r} of {method!r} must be true or false, got {value!r}.")


def as_choice(method: str, name: str, value: Any, choices: Iterable[str]) -> str:
    valid = list(choices)
    text = str(value).strip().lower()
    if text not in valid:
        raise UsageError(
            f"Option {name!r} of {method!r} must be one of {', '.join(valid)}, got {value!r}."
            f"{did_you_mean(text, valid)}"
        )
    return text


def as_pair(method: str, value: Any) -> tuple[str, str] | None:
    """``("teacher", "student")`` from a 2-sequence or a ``"teacher,student"`` string."""
    if value is None:
        return None
    parts: list[Any]
    if isinstance(value, str):
        sep = "," if "," in value else ":"
        parts = [p.strip() for p in value.split(sep)]
    elif isinstance(value, list | tuple):
        parts = list(value)
    else:
        parts = []
    if len(parts) != 2 or not all(isinstance(p, str) and p for p in parts):
        raise UsageError(
            f"Option 'pair' of {method!r} must name a teacher and a student, "
            f'e.g. ["resnet56", "resnet20"] or "resnet56,resnet20", got {value!r}.'
        )
    return parts[0], parts[1]

"""Reading a component's options: one coercion and unknown-option check for every kind.

Options reach factories from TOML files, ``--set TABLE.KEY=VALUE`` and Python calls, so a
value may be typed or a string.  Each helper coerces and range-checks one value and raises a
:class:`~ekdcli.util.errors.UsageError` of one sentence that names the option, its owner (a
label such as ``distiller 'kd'``, see :func:`owner`), the bad value and what is accepted.
``None`` means "not given" throughout.  No torch here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ekdcli.util.errors import UsageError, did_you_mean

# Seeds: what torch's generators take (numpy gets seed % 2**32); the range docs/configuration.md gives.
MAX_SEED = 2**63 - 1

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def owner(kind: str, name: str) -> str:
    """The label options are reported under: ``owner("distiller", "kd")`` -> ``distiller 'kd'``."""
    return f"{kind} {name!r}"


def _fail(who: str, name: str, requirement: str, value: Any) -> UsageError:
    return UsageError(f"option {name!r} of {who} must be {requirement}, got {value!r}.")


def check_names(who: str, options: Mapping[str, Any], valid: Iterable[str]) -> None:
    """Refuse option names the component does not take, listing the ones it does."""
    allowed = list(valid)
    unknown = sorted(set(options) - set(allowed))
    if not unknown:
        return
    hints = "".join(did_you_mean(key, allowed) for key in unknown)
    listed = ", ".join(allowed) if allowed else "none"
    raise UsageError(
        f"{who} has no option {', '.join(repr(u) for u in unknown)}; valid options are {listed}.{hints}"
    )


def given(options: Mapping[str, Any], name: str) -> bool:
    return options.get(name) is not None


def pick(options: Mapping[str, Any], name: str, default: Any) -> Any:
    """The given value of ``name``, else ``default``."""
    value = options.get(name)
    return default if value is None else value


def as_float(who: str, name: str, value: Any, *, positive: bool = False, non_negative: bool = False) -> float:
    """A finite number; ``positive`` / ``non_negative`` add the range check."""
    if isinstance(value, bool):
        raise _fail(who, name, "a number", value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _fail(who, name, "a number", value) from None
    if not math.isfinite(number):
        raise _fail(who, name, "a finite number", value)
    if positive and number <= 0:
        raise _fail(who, name, "greater than 0", value)
    if non_negative and number < 0:
        raise _fail(who, name, "0 or more", value)
    return number


def as_int(who: str, name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """A whole number (``"10"`` and ``10.0`` are accepted) from ``minimum`` to ``maximum``."""
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
        if not math.isfinite(number) or number != int(number):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise _fail(who, name, "an integer", value) from None
    whole = int(number)
    if minimum is not None and whole < minimum:
        raise _fail(who, name, f"at least {minimum}", value)
    if maximum is not None and whole > maximum:
        raise _fail(who, name, f"at most {maximum}", value)
    return whole


def as_seed(who: str, name: str, value: Any) -> int:
    """A random seed: a whole number from 0 to 2**63-1."""
    return as_int(who, name, value, minimum=0, maximum=MAX_SEED)


def as_rate(who: str, name: str, value: Any, *, allow_one: bool = False) -> float:
    """A fraction in (0, 1), or in (0, 1] with ``allow_one``."""
    rate = as_float(who, name, value)
    if allow_one and not 0.0 < rate <= 1.0:
        raise _fail(who, name, "in (0, 1]", value)
    if not allow_one and not 0.0 < rate < 1.0:
        raise _fail(who, name, "between 0 and 1 (exclusive)", value)
    return rate


def as_bool(who: str, name: str, value: Any) -> bool:
    """true/false, yes/no, on/off, 1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise _fail(who, name, "true or false", value)


def as_choice(who: str, name: str, value: Any, choices: Iterable[str]) -> str:
    valid = list(choices)
    text = str(value).strip().lower()
    if text not in valid:
        raise UsageError(
            f"option {name!r} of {who} must be one of {', '.join(valid)}, got {value!r}.{did_you_mean(text, valid)}"
        )
    return text


def as_pair(who: str, value: Any) -> tuple[str, str] | None:
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
            f"option 'pair' of {who} must name a teacher and a student, "
            f'e.g. ["resnet56", "resnet20"] or "resnet56,resnet20", got {value!r}.'
        )
    return parts[0], parts[1]

"""Small text helpers for messages and tables (one place for each: ``plural``, ``pct``, ``flatten``)."""

from __future__ import annotations

import math
from typing import Any


def plural(count: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def finite(value: Any) -> bool:
    """A real number that is not NaN or infinite (booleans are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pct(value: Any, digits: int = 2, *, signed: bool = False, suffix: str = "") -> str:
    """A fraction as a percentage: ``0.4567`` -> ``45.67`` (``+45.67`` signed; ``45.67%`` with
    ``suffix="%"``); ``-`` when it is not a finite number."""
    if not finite(value):
        return "-"
    return f"{100 * value:{'+' if signed else ''}.{digits}f}{suffix}"


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as one level, keys joined with ``.`` (``{"losses": {"kd": 1}}`` -> ``losses.kd``)."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out

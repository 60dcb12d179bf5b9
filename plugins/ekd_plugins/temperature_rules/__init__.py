"""The temperature-rule plugin: fixed, energy (the paper's and the released presets) and gradation.

Importing this module stays cheap (no torch): factories are ``"module:attr"`` strings the core
imports on first use, and ``info["options"]`` is each rule's option record (``options.py``),
from which the registry derives the defaults ``ekd list`` shows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ekd_plugins.temperature_rules.options import EnergyOptions, FixedOptions, GradationOptions
from ekdcli.sdk.hookspecs import hookimpl

__all__ = ["register_temperature_rules", "rule_table"]

_PKG = "ekd_plugins.temperature_rules"

# name, "module:function", aliases, description, needs_energy, options
_TABLE: list[tuple[str, str, tuple[str, ...], str, bool, type]] = [
    (
        "fixed",
        "fixed:make_fixed",
        (),
        "One temperature t for every sample (Hinton KD, DKD)",
        False,
        FixedOptions,
    ),
    (
        "energy",
        "energy:make_energy",
        (),
        "Energy KD (Eq. 9): low / mid / high teacher-energy samples get their own temperature "
        "(presets paper, official; ablations apply=low|high, segments)",
        True,
        EnergyOptions,
    ),
    (
        "gradation",
        "energy:make_gradation",
        (),
        "Temperature gradation (Table 4): N equal-count energy segments, temperatures evenly from "
        "t_min to t_max",
        True,
        GradationOptions,
    ),
]


def rule_table() -> list[tuple[str, str, tuple[str, ...], str, dict[str, Any]]]:
    """Every rule as ``(name, factory string, aliases, description, info)``; no torch needed."""
    rows = []
    for name, target, aliases, description, energy, options in _TABLE:
        info = {"needs_energy": energy, "options": options}
        rows.append((name, f"{_PKG}.{target}", aliases, description, info))
    return rows


@hookimpl
def register_temperature_rules(register: Callable[..., Any]) -> None:
    """Register the temperature rules with the core."""
    for name, factory, aliases, description, info in rule_table():
        register(name, factory, aliases=aliases, description=description, info=info)

"""The distiller plugin: CE, KD, DKD, Energy KD and Energy DKD (with every ablation as options).

Importing this module stays cheap (no torch): factories are ``"module:attr"``
strings the core imports on first use, and ``info`` lists each method's
options with their defaults (``None`` = taken from the preset or the pair).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ekd_plugins.distillers.options import (
    CE_OPTIONS,
    DKD_OPTIONS,
    ENERGY_DKD_OPTIONS,
    ENERGY_KD_OPTIONS,
    KD_OPTIONS,
)
from ekd_plugins.distillers.pairs import DKD_BETAS, DKD_DEFAULT_BETA, ENERGY_RATES
from ekdcli.sdk.hookspecs import hookimpl

__all__ = ["DKD_BETAS", "DKD_DEFAULT_BETA", "ENERGY_RATES", "distiller_table", "register_distillers"]

_PKG = "ekd_plugins.distillers"

# name, "module:function", aliases, description, needs_teacher, needs_energy, options
_TABLE: list[tuple[str, str, tuple[str, ...], str, bool, bool, dict[str, Any]]] = [
    ("ce", "logit:make_ce", (), "Cross-entropy only (teachers, student baselines)", False, False, CE_OPTIONS),
    (
        "kd",
        "logit:make_kd",
        (),
        "Hinton KD: w_ce*CE + w_kd*T^2*KL at one temperature",
        True,
        False,
        KD_OPTIONS,
    ),
    (
        "dkd",
        "logit:make_dkd",
        (),
        "Decoupled KD (Zhao et al. 2022): CE + warm-up*(alpha*TCKD + beta*NCKD)",
        True,
        False,
        DKD_OPTIONS,
    ),
    (
        "energy_kd",
        "energy_kd:make_energy_kd",
        ("energy-kd", "ekd"),
        "Energy KD: KD with a per-sample temperature from the teacher's energy score",
        True,
        True,
        ENERGY_KD_OPTIONS,
    ),
    (
        "energy_dkd",
        "energy_kd:make_energy_dkd",
        ("energy-dkd",),
        "Energy DKD: DKD with the per-sample energy temperature in TCKD and NCKD",
        True,
        True,
        ENERGY_DKD_OPTIONS,
    ),
]


def distiller_table() -> list[tuple[str, str, tuple[str, ...], str, dict[str, Any]]]:
    """Every distiller as ``(name, factory string, aliases, description, info)``; no torch needed."""
    rows = []
    for name, target, aliases, description, teacher, energy, options in _TABLE:
        info = {"needs_teacher": teacher, "needs_energy": energy, "options": dict(options)}
        rows.append((name, f"{_PKG}.{target}", aliases, description, info))
    return rows


@hookimpl
def register_distillers(register: Callable[..., Any]) -> None:
    """Register the logit distillers with the core."""
    for name, factory, aliases, description, info in distiller_table():
        register(name, factory, aliases=aliases, description=description, info=info)

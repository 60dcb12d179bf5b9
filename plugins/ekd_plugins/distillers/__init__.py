"""The distiller plugin: CE, KD, DKD, MLKD, CTKD, and Energy KD / Energy DKD (KD / DKD with the energy rule).

Importing this module stays cheap (no torch): factories are ``"module:attr"``
strings the core imports on first use, and ``info`` lists each method's
options with their defaults (``None`` = taken from the preset or the pair) and, for the
temperature-based ones, ``temperature_rule``: the rule used unless ``--temperature-rule``
names another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ekd_plugins.distillers.feature import FEATURE_TABLE
from ekd_plugins.distillers.options import (
    CE_OPTIONS,
    CTKD_OPTIONS,
    DKD_OPTIONS,
    ENERGY_DKD_OPTIONS,
    ENERGY_KD_OPTIONS,
    KD_OPTIONS,
    MLKD_OPTIONS,
)
from ekd_plugins.pairs import DKD_BETAS, DKD_DEFAULT_BETA, ENERGY_RATES
from ekdcli.sdk.hookspecs import hookimpl

__all__ = ["DKD_BETAS", "DKD_DEFAULT_BETA", "ENERGY_RATES", "distiller_table", "register_distillers"]

_PKG = "ekd_plugins.distillers"

# name, "module:function", aliases, description, needs_teacher, default temperature rule, options
_TABLE: list[tuple[str, str, tuple[str, ...], str, bool, str | None, dict[str, Any]]] = [
    ("ce", "logit:make_ce", (), "Cross-entropy only (teachers, student baselines)", False, None, CE_OPTIONS),
    (
        "kd",
        "logit:make_kd",
        (),
        "Hinton KD: w_ce*CE + w_kd*T^2*KL at the rule's temperature",
        True,
        "fixed",
        KD_OPTIONS,
    ),
    (
        "dkd",
        "logit:make_dkd",
        (),
        "Decoupled KD (Zhao et al. 2022): CE + warm-up*(alpha*TCKD + beta*NCKD)",
        True,
        "fixed",
        DKD_OPTIONS,
    ),
    (
        "mlkd",
        "mlkd:make_mlkd",
        (),
        "Multi-level logit distillation (Jin et al. 2023): instance, batch and class alignment over a "
        "weak and a strong view, five temperatures",
        True,
        "fixed",
        MLKD_OPTIONS,
    ),
    (
        "ctkd",
        "ctkd:make_ctkd",
        (),
        "Curriculum temperature KD (Li et al. 2023): KD at a learned temperature, trained adversarially "
        "through gradient reversal with a cosine curriculum",
        True,
        "fixed",
        CTKD_OPTIONS,
    ),
    (
        "energy_kd",
        "energy_kd:make_energy_kd",
        ("energy-kd", "ekd"),
        "Energy KD: KD with the energy temperature rule (per-sample T from the teacher's energy)",
        True,
        "energy",
        ENERGY_KD_OPTIONS,
    ),
    (
        "energy_dkd",
        "energy_kd:make_energy_dkd",
        ("energy-dkd",),
        "Energy DKD: DKD with the energy temperature rule in TCKD and NCKD",
        True,
        "energy",
        ENERGY_DKD_OPTIONS,
    ),
]

# Default rules that read the score file (their distillers need energies unless another rule is chosen).
_ENERGY_RULES = ("energy", "gradation")


def distiller_table() -> list[tuple[str, str, tuple[str, ...], str, dict[str, Any]]]:
    """Every distiller as ``(name, factory string, aliases, description, info)``; no torch needed."""
    rows = []
    for name, target, aliases, description, teacher, rule, options in _TABLE:
        info: dict[str, Any] = {
            "kind": "logit",
            "needs_teacher": teacher,
            "needs_energy": rule in _ENERGY_RULES,
            "options": dict(options),
        }
        if rule is not None:
            info["temperature_rule"] = rule
        if name == "mlkd":
            info["needs_strong_view"] = True
        if name == "ctkd":
            info["needs_num_classes"] = True  # the instance variant's MLP
        rows.append((name, f"{_PKG}.{target}", aliases, description, info))
    for name, target, aliases, description, info in FEATURE_TABLE:
        rows.append((name, f"{_PKG}.feature.{target}", aliases, description, dict(info)))
    return rows


@hookimpl
def register_distillers(register: Callable[..., Any]) -> None:
    """Register the logit distillers with the core."""
    for name, factory, aliases, description, info in distiller_table():
        register(name, factory, aliases=aliases, description=description, info=info)

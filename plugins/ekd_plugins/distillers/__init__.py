"""The distiller plugin: CE, KD, DKD, MLKD, CTKD, and Energy KD / Energy DKD (KD / DKD with the energy rule).

Importing this module stays cheap (no torch): factories are ``"module:attr"``
strings the core imports on first use, and ``info`` carries each method's option record
(``options.py``; ``None`` defaults = taken from the preset or the pair) and, for the
temperature-based ones, ``temperature_rule``: the rule used unless ``--temperature-rule``
names another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ekd_plugins.distillers.feature import FEATURE_TABLE
from ekd_plugins.distillers.options import (
    CEOptions,
    CTKDOptions,
    DKDOptions,
    EnergyDKDOptions,
    EnergyKDOptions,
    KDOptions,
    MLKDOptions,
)
from ekd_plugins.pairs import DKD_BETAS, DKD_DEFAULT_BETA, ENERGY_RATES
from ekdcli.sdk.hookspecs import hookimpl

__all__ = ["DKD_BETAS", "DKD_DEFAULT_BETA", "ENERGY_RATES", "Row", "distiller_table", "register_distillers"]

_PKG = "ekd_plugins.distillers"

# Default rules that read the score file (their distillers need energies unless another rule is chosen).
_ENERGY_RULES = ("energy", "gradation")


@dataclass(frozen=True)
class Row:
    """One logit distiller: everything ``info`` says about it is a field here (no name switches)."""

    name: str
    target: str  # "module:function" under this package
    description: str
    options: type  # its option record (options.py)
    temperature_rule: str | None = "fixed"  # the rule used unless --temperature-rule names another
    needs_teacher: bool = True
    aliases: tuple[str, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)  # other static info (needs_strong_view, ...)

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "kind": "logit",
            "needs_teacher": self.needs_teacher,
            "needs_energy": self.temperature_rule in _ENERGY_RULES,
            "options": self.options,  # the registry derives the defaults and the help from the record
            **self.facts,
        }
        if self.temperature_rule is not None:
            info["temperature_rule"] = self.temperature_rule
        return info


_TABLE: list[Row] = [
    Row("ce", "logit:make_ce", "Cross-entropy only (teachers, student baselines)", CEOptions, None, False),
    Row("kd", "logit:make_kd", "Hinton KD: w_ce*CE + w_kd*T^2*KL at the rule's temperature", KDOptions),
    Row(
        "dkd",
        "logit:make_dkd",
        "Decoupled KD (Zhao et al. 2022): CE + warm-up*(alpha*TCKD + beta*NCKD)",
        DKDOptions,
    ),
    Row(
        "mlkd",
        "mlkd:make_mlkd",
        "Multi-level logit distillation (Jin et al. 2023): instance, batch and class alignment over a "
        "weak and a strong view, five temperatures",
        MLKDOptions,
        facts={"needs_strong_view": True},
    ),
    Row(
        "ctkd",
        "ctkd:make_ctkd",
        "Curriculum temperature KD (Li et al. 2023): KD at a learned temperature, trained adversarially "
        "through gradient reversal with a cosine curriculum",
        CTKDOptions,
        facts={"needs_num_classes": True},  # the instance variant's MLP
    ),
    Row(
        "energy_kd",
        "energy_kd:make_energy_kd",
        "Energy KD: KD with the energy temperature rule (per-sample T from the teacher's energy)",
        EnergyKDOptions,
        "energy",
        aliases=("energy-kd", "ekd"),
    ),
    Row(
        "energy_dkd",
        "energy_kd:make_energy_dkd",
        "Energy DKD: DKD with the energy temperature rule in TCKD and NCKD",
        EnergyDKDOptions,
        "energy",
        aliases=("energy-dkd",),
    ),
]


def distiller_table() -> list[tuple[str, str, tuple[str, ...], str, dict[str, Any]]]:
    """Every distiller as ``(name, factory string, aliases, description, info)``; no torch needed.

    ``info["options"]`` is every method's option record (``options.py``, ``feature/options_*.py``);
    the registry derives the defaults and the help from it.
    """
    rows = [(r.name, f"{_PKG}.{r.target}", r.aliases, r.description, r.info()) for r in _TABLE]
    for name, target, aliases, description, info in FEATURE_TABLE:
        rows.append((name, f"{_PKG}.feature.{target}", aliases, description, dict(info)))
    return rows


@hookimpl
def register_distillers(register: Callable[..., Any]) -> None:
    """Register the logit distillers with the core."""
    for name, factory, aliases, description, info in distiller_table():
        register(name, factory, aliases=aliases, description=description, info=info)

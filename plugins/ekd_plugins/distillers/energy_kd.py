"""Energy KD and Energy DKD: the names of KD and DKD with the ``energy`` temperature rule.

They are :class:`~ekd_plugins.distillers.logit.KDDistiller` and
:class:`~ekd_plugins.distillers.logit.DKDDistiller` whose default rule is ``energy`` (the
paper's preset unless ``preset = "official"``), so ``--method energy_kd`` and ``--method kd
--temperature-rule energy`` compute the same losses, bit for bit.
"""

from __future__ import annotations

from typing import Any

from ekd_plugins.distillers.logit import DKDDistiller, KDDistiller, build_dkd, build_kd
from ekd_plugins.distillers.options import EnergyDKDOptions, EnergyKDOptions
from ekdcli.sdk.contracts import TemperatureRule


def make_energy_kd(*, temperature_rule: TemperatureRule | None = None, **options: Any) -> KDDistiller:
    return build_kd("energy_kd", "energy", EnergyKDOptions, temperature_rule, options)


def make_energy_dkd(*, temperature_rule: TemperatureRule | None = None, **options: Any) -> DKDDistiller:
    return build_dkd("energy_dkd", "energy", EnergyDKDOptions, temperature_rule, options)

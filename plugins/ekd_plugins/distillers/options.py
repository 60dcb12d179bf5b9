"""The options each distiller takes, with their defaults (torch-free; ``ekd list`` shows them).

Values are read with :mod:`ekdcli.sdk.options`; ``None`` means "not given" and, as a default,
"decided by the preset or the teacher/student pair".
"""

from __future__ import annotations

from typing import Any

from ekdcli.sdk.energy import ENERGY_TEMPERATURE

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
    "energy_temperature": ENERGY_TEMPERATURE,
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

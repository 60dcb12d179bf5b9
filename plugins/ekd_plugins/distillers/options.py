"""The options each distiller takes, with their defaults (torch-free; ``ekd list`` shows them).

Values are read with :mod:`ekdcli.sdk.options`; ``None`` means "not given" and, as a default,
"decided by the preset or the teacher/student pair".  A temperature-based distiller also lists
the options of its default temperature rule (``t`` of ``fixed``; the ``energy`` rule's for
Energy KD / DKD): given to the distiller, they reach that rule.
"""

from __future__ import annotations

from typing import Any

from ekd_plugins.temperature_rules.options import ENERGY_OPTIONS, FIXED_OPTIONS

# Defaults shown by `ekd list distillers`; None = "taken from the preset / pair".
CE_OPTIONS: dict[str, Any] = {}
KD_LOSS: dict[str, Any] = {"w_ce": 0.1, "w_kd": 0.9, "logit_standardize": False}
DKD_LOSS: dict[str, Any] = {
    "alpha": 1.0,
    "beta": None,
    "warmup": 20.0,
    "w_ce": 1.0,
    "logit_standardize": False,
    "pair": None,
}
KD_OPTIONS: dict[str, Any] = {**FIXED_OPTIONS, **KD_LOSS}
DKD_OPTIONS: dict[str, Any] = {**FIXED_OPTIONS, **DKD_LOSS}
ENERGY_KD_OPTIONS: dict[str, Any] = {**KD_LOSS, "pair": None, **ENERGY_OPTIONS}
ENERGY_DKD_OPTIONS: dict[str, Any] = {**DKD_LOSS, **ENERGY_OPTIONS}
# MLKD (Jin et al., CVPR 2023): mdistiller's KD weights, used by the authors' CIFAR-100 configs.
MLKD_LOSS: dict[str, Any] = {"w_ce": 0.1, "w_kd": 0.9, "logit_standardize": False}
MLKD_OPTIONS: dict[str, Any] = {**FIXED_OPTIONS, **MLKD_LOSS}
# CTKD (Li et al., AAAI 2023): the released scripts' CIFAR-100 settings (train_student.py, run_cifar_distill.sh).
CTKD_OPTIONS: dict[str, Any] = {
    "variant": "global",
    "t_start": 1.0,
    "t_range": 20.0,
    "lambda_min": 0.0,
    "lambda_max": 1.0,
    "lambda_epochs": 10,
    "hidden": 128,
    "w_ce": 0.1,
    "w_kd": 0.9,
    "logit_standardize": False,
}

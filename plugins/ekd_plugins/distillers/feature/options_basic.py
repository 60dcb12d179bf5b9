"""The options of FitNet, AT, PKT, RKD, SP, NST and KDSVD with their defaults (torch-free).

One place for each method's defaults: the registry rows (``ekd list distillers``) and the
factories both read them.  Values are mdistiller's (commit a08d46f): ``engine/cfg.py``, not
overridden by ``configs/cifar100/<method>.yaml``.  ``w_ce`` is ``<METHOD>.LOSS.CE_WEIGHT``,
``w_feat`` is ``<METHOD>.LOSS.FEAT_WEIGHT``.
"""

from __future__ import annotations

from typing import Any

FITNET_OPTIONS: dict[str, Any] = {"w_ce": 1.0, "w_feat": 100.0, "hint_layer": 2}
AT_OPTIONS: dict[str, Any] = {"w_ce": 1.0, "w_feat": 1000.0, "p": 2.0}
PKT_OPTIONS: dict[str, Any] = {"w_ce": 1.0, "w_feat": 30000.0}
RKD_OPTIONS: dict[str, Any] = {
    "w_ce": 1.0,
    "w_feat": 1.0,
    "distance_weight": 25.0,
    "angle_weight": 50.0,
    "pdist_eps": 1e-12,
    "pdist_squared": False,
}
SP_OPTIONS: dict[str, Any] = {"w_ce": 1.0, "w_feat": 3000.0}
NST_OPTIONS: dict[str, Any] = {"w_ce": 1.0, "w_feat": 50.0}
KDSVD_OPTIONS: dict[str, Any] = {"w_ce": 1.0, "w_feat": 1.0, "k": 1}

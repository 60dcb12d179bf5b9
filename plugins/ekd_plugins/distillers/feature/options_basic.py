"""The options of FitNet, AT, PKT, RKD, SP, NST and KDSVD, stated once as option records (torch-free).

Each record is a frozen dataclass whose fields carry the default, the accepted values and a line of
help (:func:`ekdcli.sdk.options.option`): the registry rows (``ekd list distillers``) derive
``info["options"]`` from it and the factories read their options with
:func:`ekdcli.sdk.options.read_options`.  Values are mdistiller's (commit a08d46f): ``engine/cfg.py``,
not overridden by ``configs/cifar100/<method>.yaml``.  ``w_ce`` is ``<METHOD>.LOSS.CE_WEIGHT``,
``w_feat`` is ``<METHOD>.LOSS.FEAT_WEIGHT``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ekdcli.sdk.options import defaults, option

_CE = "weight of the cross-entropy term"
_FEAT = "weight of the feature term"


@dataclass(frozen=True)
class FitNetOptions:
    w_ce: float = option(1.0, _CE, minimum=0.0)
    w_feat: float = option(100.0, _FEAT, minimum=0.0)
    hint_layer: int = option(
        2, "index of the hint feature map (feats[hint_layer]) regressed onto the teacher's", minimum=0
    )


@dataclass(frozen=True)
class ATOptions:
    w_ce: float = option(1.0, _CE, minimum=0.0)
    w_feat: float = option(1000.0, _FEAT, minimum=0.0)
    p: float = option(2.0, "power of the feature maps in the attention maps", positive=True)


@dataclass(frozen=True)
class PKTOptions:
    w_ce: float = option(1.0, _CE, minimum=0.0)
    w_feat: float = option(30000.0, _FEAT, minimum=0.0)


@dataclass(frozen=True)
class RKDOptions:
    w_ce: float = option(1.0, _CE, minimum=0.0)
    w_feat: float = option(1.0, _FEAT, minimum=0.0)
    distance_weight: float = option(25.0, "weight of the distance-wise relation loss", minimum=0.0)
    angle_weight: float = option(50.0, "weight of the angle-wise relation loss", minimum=0.0)
    pdist_eps: float = option(1e-12, "lower bound of the pairwise distances", positive=True)
    pdist_squared: bool = option(False, "use squared pairwise distances")


@dataclass(frozen=True)
class SPOptions:
    w_ce: float = option(1.0, _CE, minimum=0.0)
    w_feat: float = option(3000.0, _FEAT, minimum=0.0)


@dataclass(frozen=True)
class NSTOptions:
    w_ce: float = option(1.0, _CE, minimum=0.0)
    w_feat: float = option(50.0, _FEAT, minimum=0.0)


@dataclass(frozen=True)
class KDSVDOptions:
    w_ce: float = option(1.0, _CE, minimum=0.0)
    w_feat: float = option(1.0, _FEAT, minimum=0.0)
    k: int = option(1, "number of leading singular vectors compared", minimum=1)


# The defaults as dicts, derived from the records.
FITNET_OPTIONS = defaults(FitNetOptions)
AT_OPTIONS = defaults(ATOptions)
PKT_OPTIONS = defaults(PKTOptions)
RKD_OPTIONS = defaults(RKDOptions)
SP_OPTIONS = defaults(SPOptions)
NST_OPTIONS = defaults(NSTOptions)
KDSVD_OPTIONS = defaults(KDSVDOptions)

"""Option records of VID, OFD, CRD and ReviewKD, and mdistiller's per-pair values (torch-free).

The defaults are mdistiller's (commit a08d46f): ``engine/cfg.py`` and ``configs/cifar100/*.yaml``.
``None`` means "derived from the teacher/student pair in ``bind()``" (ReviewKD's shapes and
channels) or "taken from :data:`MDISTILLER_PAIRS`, else the cfg default" (the weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ekdcli.sdk.options import defaults, option

_CE = "weight of the cross-entropy term"
_FEAT = "weight of the feature term"


# CFG.VID: CE_WEIGHT 1, FEAT_WEIGHT 1, EPS 1e-5, INIT_PRED_VAR 5.
@dataclass(frozen=True)
class VIDOptions:
    w_ce: float = option(1.0, _CE, minimum=0.0)
    w_feat: float = option(1.0, _FEAT, minimum=0.0)
    eps: float = option(1e-5, "lower bound of the regressors' variances", positive=True)
    init_pred_var: float = option(5.0, "initial variance of the regressors (greater than eps)", positive=True)


# CFG.OFD: CE_WEIGHT 1, FEAT_WEIGHT 1e-3, CONNECTOR.KERNEL_SIZE 1.
OFD_W_FEAT = 1e-3


@dataclass(frozen=True)
class OFDOptions:
    w_ce: float = option(1.0, _CE, minimum=0.0)
    w_feat: float | None = option(
        None,
        "weight of the feature term; default: the pair's mdistiller value, else 1e-3",
        kind="float",
        minimum=0.0,
    )
    connector_kernel: int = option(1, "kernel size of the student's connector convolutions", minimum=1)


# CFG.CRD: MODE exact, FEAT.DIM 128, CE_WEIGHT 1, FEAT_WEIGHT 0.8, NCE K 16384 / MOMENTUM 0.5 /
# TEMPERATURE 0.07.  The embedding input sizes (FEAT.STUDENT_DIM / TEACHER_DIM) come from the models.
CRD_MODES = ("exact", "relax")


@dataclass(frozen=True)
class CRDOptions:
    w_ce: float = option(1.0, _CE, minimum=0.0)
    w_feat: float = option(0.8, _FEAT, minimum=0.0)
    mode: str = option("exact", "exact or relax: the NCE loss's form", choices=CRD_MODES)
    feat_dim: int = option(128, "dimension of the embedded features", minimum=1)
    nce_k: int = option(16384, "number of negatives per sample", minimum=1)
    nce_momentum: float = option(0.5, "momentum of the memory banks, in (0, 1]", kind="rate")
    nce_t: float = option(0.07, "temperature of the NCE loss", positive=True)


# CFG.REVIEWKD: CE_WEIGHT 1, REVIEWKD_WEIGHT 1, WARMUP_EPOCHS 20, MAX_MID_CHANNEL 512, STU_PREACT False;
# SHAPES / OUT_SHAPES / IN_CHANNELS / OUT_CHANNELS are derived from the models unless given.
_PAIR = "default: the pair's mdistiller value, else "
_LAYOUT = "; default: derived from the teacher and student (a given value must agree)"


@dataclass(frozen=True)
class ReviewKDOptions:
    w_ce: float = option(1.0, _CE, minimum=0.0)
    w_feat: float | None = option(None, f"weight of the review loss; {_PAIR}1", kind="float", minimum=0.0)
    warmup: float | None = option(
        None, f"epochs over which the review loss ramps up; {_PAIR}20", kind="float", positive=True
    )
    shapes: list[int] | None = option(None, f"spatial sizes of the student's levels, deepest first{_LAYOUT}")
    out_shapes: list[int] | None = option(None, f"spatial sizes of the teacher's levels{_LAYOUT}")
    in_channels: list[int] | None = option(None, f"channels of the student's levels{_LAYOUT}")
    out_channels: list[int] | None = option(None, f"channels of the teacher's levels{_LAYOUT}")
    max_mid_channel: int | None = option(
        None, f"channels of the attention fusion blocks; {_PAIR}512", kind="int", minimum=1
    )
    stu_preact: bool | None = option(
        None, f"read the student's pre-activation features; {_PAIR}false", kind="bool"
    )


# The defaults as dicts, derived from the records.
VID_OPTIONS: dict[str, Any] = defaults(VIDOptions)
OFD_OPTIONS: dict[str, Any] = defaults(OFDOptions)
CRD_OPTIONS: dict[str, Any] = defaults(CRDOptions)
REVIEWKD_OPTIONS: dict[str, Any] = defaults(ReviewKDOptions)
# What ReviewKD's None defaults become without a given or per-pair value.
REVIEWKD_DEFAULTS: dict[str, Any] = {
    "w_feat": 1.0,
    "warmup": 20.0,
    "stu_preact": False,
    "max_mid_channel": 512,
}
REVIEWKD_LAYOUT = ("shapes", "out_shapes", "in_channels", "out_channels")

# mdistiller's per-pair settings (teacher, student) -> {method: {option: value}}, from its yaml files.
# ReviewKD's shapes/channels there equal what bind() derives from the models (tests check it);
# they are listed so that the table shows everything mdistiller hand-wrote.
MDISTILLER_PAIRS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("resnet32x4", "resnet8x4"): {
        "reviewkd": {
            "w_feat": 5.0,
            "shapes": [1, 8, 16, 32],
            "out_shapes": [1, 8, 16, 32],
            "in_channels": [64, 128, 256, 256],
            "out_channels": [64, 128, 256, 256],
        },
    },
    ("resnet34", "resnet18"): {
        "reviewkd": {
            "w_feat": 1.0,
            "warmup": 1.0,
            "stu_preact": True,
            "shapes": [1, 7, 14, 28, 56],
            "out_shapes": [1, 7, 14, 28, 56],
            "in_channels": [64, 128, 256, 512, 512],
            "out_channels": [64, 128, 256, 512, 512],
        },
    },
    ("resnet50", "mobilenetv1"): {
        "ofd": {"w_feat": 1e-4},
        "reviewkd": {
            "w_feat": 8.0,
            "warmup": 1.0,
            "stu_preact": True,
            "shapes": [1, 7, 14, 28, 56],
            "out_shapes": [1, 7, 14, 28, 56],
            "in_channels": [128, 256, 512, 1024, 1024],
            "out_channels": [256, 512, 1024, 2048, 2048],
            # The yaml says MAX_MID_CHANNEL 256, but mdistiller's ReviewKD ignores that key and uses
            # min(512, in_channels[-1]) = 512: the value its published run trained with.
            "max_mid_channel": 512,
        },
    },
}

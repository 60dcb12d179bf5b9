"""Defaults of VID, OFD, CRD and ReviewKD, and mdistiller's per-pair values (torch-free).

The defaults are mdistiller's (commit a08d46f): ``engine/cfg.py`` and ``configs/cifar100/*.yaml``.
``None`` means "derived from the teacher/student pair in ``bind()``" (ReviewKD's shapes and
channels) or "taken from :data:`MDISTILLER_PAIRS`, else the cfg default" (the weights).
"""

from __future__ import annotations

from typing import Any

# CFG.VID: CE_WEIGHT 1, FEAT_WEIGHT 1, EPS 1e-5, INIT_PRED_VAR 5.
VID_OPTIONS: dict[str, Any] = {"w_ce": 1.0, "w_feat": 1.0, "eps": 1e-5, "init_pred_var": 5.0}

# CFG.OFD: CE_WEIGHT 1, FEAT_WEIGHT 1e-3, CONNECTOR.KERNEL_SIZE 1.
OFD_OPTIONS: dict[str, Any] = {"w_ce": 1.0, "w_feat": None, "connector_kernel": 1}
OFD_W_FEAT = 1e-3

# CFG.CRD: MODE exact, FEAT.DIM 128, CE_WEIGHT 1, FEAT_WEIGHT 0.8, NCE K 16384 / MOMENTUM 0.5 /
# TEMPERATURE 0.07.  The embedding input sizes (FEAT.STUDENT_DIM / TEACHER_DIM) come from the models.
CRD_OPTIONS: dict[str, Any] = {
    "w_ce": 1.0,
    "w_feat": 0.8,
    "mode": "exact",
    "feat_dim": 128,
    "nce_k": 16384,
    "nce_momentum": 0.5,
    "nce_t": 0.07,
}
CRD_MODES = ("exact", "relax")

# CFG.REVIEWKD: CE_WEIGHT 1, REVIEWKD_WEIGHT 1, WARMUP_EPOCHS 20, MAX_MID_CHANNEL 512, STU_PREACT False;
# SHAPES / OUT_SHAPES / IN_CHANNELS / OUT_CHANNELS are derived from the models unless given.
REVIEWKD_OPTIONS: dict[str, Any] = {
    "w_ce": 1.0,
    "w_feat": None,
    "warmup": None,
    "shapes": None,
    "out_shapes": None,
    "in_channels": None,
    "out_channels": None,
    "max_mid_channel": None,
    "stu_preact": None,
}
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

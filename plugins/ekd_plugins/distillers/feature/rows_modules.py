"""Table rows of VID, OFD, CRD and ReviewKD: the feature methods with trainable state (torch-free)."""

from __future__ import annotations

from typing import Any

from ekd_plugins.distillers.feature.options_modules import (
    CRDOptions,
    OFDOptions,
    ReviewKDOptions,
    VIDOptions,
)


def _info(features: list[str], hooks: list[str], options: type, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "feature",
        "needs_teacher": True,
        "needs_energy": False,
        "features": features,
        "model_hooks": hooks,
        "options": options,  # the record: the registry derives the defaults and help
        **extra,
    }


ROWS: list[tuple[str, str, tuple[str, ...], str, dict[str, Any]]] = [
    (
        "vid",
        "vid:make_vid",
        (),
        "Variational information distillation (Ahn et al. 2019): CE + Gaussian NLL of each teacher stage "
        "given a regressor of the student's",
        _info(["feats"], [], VIDOptions),
    ),
    (
        "ofd",
        "ofd:make_ofd",
        (),
        "Overhaul of feature distillation (Heo et al. 2019): CE + partial L2 between connected pre-ReLU "
        "student stages and the teacher's, above the teacher's margins",
        _info(["preact_feats"], ["bn_before_relu"], OFDOptions, student_model_hooks=[]),
    ),
    (
        "crd",
        "crd:make_crd",
        (),
        "Contrastive representation distillation (Tian et al. 2020): CE + NCE of embedded pooled features "
        "against memory banks of every training sample (one process only)",
        _info(["pooled_feat"], [], CRDOptions, single_process=True),
    ),
    (
        "reviewkd",
        "reviewkd:make_reviewkd",
        ("review_kd",),
        "Knowledge review (Chen et al. 2021): CE + hierarchical context loss between attention-fused "
        "student stages and the teacher's, warmed up",
        _info(
            ["feats", "preact_feats", "pooled_feat"],
            [],
            ReviewKDOptions,
            student_features=["feats", "pooled_feat"],  # preact_feats too with stu_preact (bind() checks)
        ),
    ),
]
"""Table rows of VID, OFD, CRD and ReviewKD (torch-free)."""

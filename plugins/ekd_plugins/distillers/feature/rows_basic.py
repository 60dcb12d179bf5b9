"""Registry rows of FitNet, AT, PKT, RKD, SP, NST and KDSVD (torch-free).

Each row is ``(name, "module:factory", aliases, description, info)``; the factories live in one
module per method beside this file.
"""

from __future__ import annotations

from typing import Any

from ekd_plugins.distillers.feature.options_basic import (
    ATOptions,
    FitNetOptions,
    KDSVDOptions,
    NSTOptions,
    PKTOptions,
    RKDOptions,
    SPOptions,
)


def _info(features: list[str], options: type) -> dict[str, Any]:
    return {
        "kind": "feature",
        "needs_teacher": True,
        "needs_energy": False,
        "features": features,
        "model_hooks": [],
        "options": options,  # the record: the registry derives the defaults and help
    }


ROWS: list[tuple[str, str, tuple[str, ...], str, dict[str, Any]]] = [
    (
        "fitnet",
        "fitnet:make_fitnet",
        (),
        "FitNets (Romero et al. 2015): CE + MSE between a regressed student hint feature and the teacher's",
        _info(["feats"], FitNetOptions),
    ),
    (
        "at",
        "at:make_at",
        (),
        "Attention transfer (Zagoruyko & Komodakis 2017): CE + squared distance of normalized spatial "
        "attention maps of every stage",
        _info(["feats"], ATOptions),
    ),
    (
        "pkt",
        "pkt:make_pkt",
        (),
        "Probabilistic knowledge transfer (Passalis & Tefas 2018): CE + KL between cosine-similarity "
        "distributions of the pooled features",
        _info(["pooled_feat"], PKTOptions),
    ),
    (
        "rkd",
        "rkd:make_rkd",
        (),
        "Relational KD (Park et al. 2019): CE + distance- and angle-wise relations of the pooled features",
        _info(["pooled_feat"], RKDOptions),
    ),
    (
        "sp",
        "sp:make_sp",
        (),
        "Similarity-preserving KD (Tung & Mori 2019): CE + distance of the batch similarity matrices "
        "of the last stage",
        _info(["feats"], SPOptions),
    ),
    (
        "nst",
        "nst:make_nst",
        (),
        "Neuron selectivity transfer (Huang & Wang 2017): CE + polynomial-kernel MMD of every stage's "
        "normalized activation maps",
        _info(["feats"], NSTOptions),
    ),
    (
        "kdsvd",
        "kdsvd:make_kdsvd",
        (),
        "KD with SVD (Lee et al. 2018): CE + RBF relations of the leading right singular vectors of "
        "consecutive stages",
        _info(["feats"], KDSVDOptions),
    ),
]
"""Table rows of FitNet, AT, PKT, RKD, SP, NST and KDSVD (torch-free)."""

"""Per teacher/student pair settings from the reference configurations (torch-free data).

``DKD_BETAS`` holds the NCKD weights of mdistiller's ``configs/cifar100/dkd/*.yaml``
(a config without ``BETA`` uses mdistiller's default, 8.0) and of its ImageNet
configs.  ``ENERGY_RATES`` holds the released Energy KD code's partition rates
where they differ from 0.2.  Names are matched after :func:`normalize_model_name`,
so ``wrn40_2`` finds ``wrn_40_2`` and ``ShuffleV2`` finds ``shufflev2``.
"""

from __future__ import annotations

# mdistiller's DKD default (CFG.DKD.BETA) for pairs whose config does not set BETA.
DKD_DEFAULT_BETA = 8.0

DKD_BETAS: dict[tuple[str, str], float] = {
    # CIFAR-100, same architecture family
    ("resnet56", "resnet20"): 2.0,
    ("resnet110", "resnet32"): 2.0,
    ("resnet32x4", "resnet8x4"): 8.0,
    ("wrn_40_2", "wrn_16_2"): 6.0,
    ("wrn_40_2", "wrn_40_1"): 6.0,
    ("vgg13", "vgg8"): 6.0,
    # CIFAR-100, different families
    ("vgg13", "MobileNetV2"): 6.0,
    ("ResNet50", "MobileNetV2"): 8.0,
    ("resnet32x4", "ShuffleV1"): 8.0,
    ("resnet32x4", "ShuffleV2"): 8.0,
    ("wrn_40_2", "ShuffleV1"): 8.0,
    # ImageNet (docs/method.md#training-recipes: T = 1, warmup 1 there)
    ("resnet34", "resnet18"): 0.5,
    ("resnet50", "mobilenetv1"): 2.0,
}

# Released Energy KD code: low/high partition rates per pair (0.2/0.2 elsewhere).
ENERGY_RATES: dict[tuple[str, str], float] = {
    ("resnet56", "resnet20"): 0.3,
}

# Spellings of the same architecture that normalization alone does not unify.
_SYNONYMS = {
    "shufflenetv1": "shufflev1",
    "shufflenetv2": "shufflev2",
    "sv1": "shufflev1",
    "sv2": "shufflev2",
    "mv2": "mobilenetv2",
    "mobilehalf": "mobilenetv2",
    "mv1": "mobilenetv1",
}


def normalize_model_name(name: str) -> str:
    """Lower case without ``_``/``-``/spaces or an ``imagenet/`` prefix, synonyms folded together."""
    base = name.strip().lower().rsplit("/", 1)[-1].removesuffix("_imagenet")
    key = "".join(ch for ch in base if ch not in "_- ")
    return _SYNONYMS.get(key, key)


def _lookup(table: dict[tuple[str, str], float], pair: tuple[str, str] | None) -> float | None:
    if pair is None:
        return None
    wanted = (normalize_model_name(pair[0]), normalize_model_name(pair[1]))
    for (teacher, student), value in table.items():
        if (normalize_model_name(teacher), normalize_model_name(student)) == wanted:
            return value
    return None


def dkd_beta_for(pair: tuple[str, str] | None) -> float | None:
    """The configured DKD beta of a known (teacher, student) pair, else ``None``."""
    return _lookup(DKD_BETAS, pair)


def energy_rate_for(pair: tuple[str, str] | None) -> float | None:
    """The released code's partition rate of a known (teacher, student) pair, else ``None``."""
    return _lookup(ENERGY_RATES, pair)

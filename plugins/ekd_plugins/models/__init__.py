"""The model zoo plugin: CIFAR models with mdistiller / RepDistiller parameter names, ImageNet models.

Importing this module must stay cheap (no torch): factories are ``"module:attr"``
strings the core imports on first use, and ``info`` holds static facts for
``ekd list`` (``params_100`` is the exact parameter count at 100 classes and 3
input channels; a test checks it against the built models; ``features`` and
``model_hooks`` say what a model offers feature distillers).  Hints live with the
model: ``recipe_lr`` is the learning rate a model trains at under a named recipe
(the reference CIFAR configs train MobileNetV2 and ShuffleNet students at 0.01).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ekdcli.sdk.hookspecs import hookimpl

_PKG = "ekd_plugins.models"

# name, "module:function", aliases, description, params_100
_CIFAR: list[tuple[str, str, tuple[str, ...], str, int]] = [
    ("resnet8", "cifar_resnet:resnet8", ("res8",), "CIFAR ResNet-8 (16/16/32/64)", 83892),
    ("resnet14", "cifar_resnet:resnet14", ("res14",), "CIFAR ResNet-14 (16/16/32/64)", 181108),
    ("resnet20", "cifar_resnet:resnet20", ("res20",), "CIFAR ResNet-20 (16/16/32/64)", 278324),
    ("resnet32", "cifar_resnet:resnet32", ("res32",), "CIFAR ResNet-32 (16/16/32/64)", 472756),
    ("resnet44", "cifar_resnet:resnet44", ("res44",), "CIFAR ResNet-44 (16/16/32/64)", 667188),
    ("resnet56", "cifar_resnet:resnet56", ("res56",), "CIFAR ResNet-56 (16/16/32/64)", 861620),
    ("resnet110", "cifar_resnet:resnet110", ("res110",), "CIFAR ResNet-110 (16/16/32/64)", 1736564),
    ("resnet8x4", "cifar_resnet:resnet8x4", ("res8x4", "resnet8_x4"), "CIFAR ResNet-8, 4x wide", 1233540),
    (
        "resnet32x4",
        "cifar_resnet:resnet32x4",
        ("res32x4", "resnet32_x4"),
        "CIFAR ResNet-32, 4x wide",
        7433860,
    ),
    ("wrn_16_1", "wrn:wrn_16_1", ("wrn16_1", "wrn-16-1"), "Wide ResNet-16-1", 180916),
    ("wrn_16_2", "wrn:wrn_16_2", ("wrn16_2", "wrn-16-2"), "Wide ResNet-16-2", 703284),
    ("wrn_40_1", "wrn:wrn_40_1", ("wrn40_1", "wrn-40-1"), "Wide ResNet-40-1", 569780),
    ("wrn_40_2", "wrn:wrn_40_2", ("wrn40_2", "wrn-40-2"), "Wide ResNet-40-2", 2255156),
    ("vgg8", "vgg:vgg8", ("vgg8_bn",), "VGG-8 with batch norm", 3965028),
    ("vgg11", "vgg:vgg11", ("vgg11_bn",), "VGG-11 with batch norm", 9277284),
    ("vgg13", "vgg:vgg13", ("vgg13_bn",), "VGG-13 with batch norm", 9462180),
    ("vgg16", "vgg:vgg16", ("vgg16_bn",), "VGG-16 with batch norm", 14774436),
    ("vgg19", "vgg:vgg19", ("vgg19_bn",), "VGG-19 with batch norm", 20086692),
    (
        "mobilenetv2",
        "mobilenetv2:mobilenetv2",
        ("mv2", "mobile_half", "mobilenetv2_half"),
        "MobileNetV2, width 0.5 (mdistiller's MobileNetV2 / mobile_half)",
        812836,
    ),
    ("shufflev1", "shufflenetv1:shufflev1", ("sv1", "shufflenetv1"), "ShuffleNet V1, 3 groups", 949258),
    ("shufflev2", "shufflenetv2:shufflev2", ("sv2", "shufflenetv2"), "ShuffleNet V2, size 1.0", 1355528),
    ("resnet18", "resnetv2:resnet18", ("res18",), "ResNet-18, CIFAR stem (mdistiller ResNet18)", 11220132),
    ("resnet34", "resnetv2:resnet34", ("res34",), "ResNet-34, CIFAR stem (mdistiller ResNet34)", 21328292),
    ("resnet50", "resnetv2:resnet50", ("res50",), "ResNet-50, CIFAR stem (mdistiller ResNet50)", 23705252),
]

_IMAGENET: list[tuple[str, str, tuple[str, ...], str, int]] = [
    ("imagenet/resnet18", "imagenet:resnet18", ("resnet18_imagenet",), "torchvision ResNet-18", 11227812),
    ("imagenet/resnet34", "imagenet:resnet34", ("resnet34_imagenet",), "torchvision ResNet-34", 21335972),
    ("imagenet/resnet50", "imagenet:resnet50", ("resnet50_imagenet",), "torchvision ResNet-50", 23712932),
    (
        "imagenet/mobilenet_v2",
        "imagenet:mobilenet_v2",
        ("mobilenet_v2_imagenet", "mobilenetv2_imagenet"),
        "torchvision MobileNetV2, width 1.0",
        2351972,
    ),
    (
        "imagenet/mobilenetv1",
        "imagenet:mobilenetv1",
        ("mobilenetv1", "mv1", "mobilenetv1_imagenet"),
        "MobileNetV1 (the student of the ResNet50 -> MobileNetV1 pair)",
        3309476,
    ),
]

# What ``forward(x, return_features=True)`` provides and which hooks a model has (the names of
# ekdcli.sdk.contracts FEATURE_KINDS / MODEL_HOOKS); a model not listed here provides all of them.
_ALL_FEATURES = ("feats", "preact_feats", "pooled_feat")
_ALL_HOOKS = ("bn_before_relu", "stage_channels")
_NO_PREACT = ("feats", "pooled_feat")
_FEATURES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "mobilenetv2": (_NO_PREACT, _ALL_HOOKS),  # mdistiller's MobileNetV2 has no preact_feats
    "shufflev1": (_ALL_FEATURES, ("stage_channels",)),  # no BN before a stage's last ReLU
    "shufflev2": (_ALL_FEATURES, ("stage_channels",)),
    "imagenet/mobilenet_v2": (_NO_PREACT, ("stage_channels",)),  # torchvision's; not in mdistiller
}

# the learning rate of the small CIFAR students under the CIFAR recipes (mdistiller / RepDistiller)
_SMALL_STUDENT_LR = {"cifar": 0.01, "cifar-energy": 0.01}
_HINTS: dict[str, dict[str, Any]] = {
    name: {"recipe_lr": _SMALL_STUDENT_LR} for name in ("mobilenetv2", "shufflev1", "shufflev2")
}

_OTHER: list[tuple[str, str, tuple[str, ...], str, int]] = [
    (
        "tiny_cnn",
        "tiny:tiny_cnn",
        ("tinycnn",),
        "A ~3k-parameter CNN for tests and demos (any input size)",
        3116,
    ),
]


def model_table() -> list[tuple[str, str, tuple[str, ...], str, dict[str, Any]]]:
    """Every model as ``(name, factory string, aliases, description, info)``; no torch needed."""
    rows = []
    for table, family, size in (
        (_CIFAR, "cifar", "32x32"),
        (_IMAGENET, "imagenet", "224x224"),
        (_OTHER, "generic", "any"),
    ):
        for name, target, aliases, description, params in table:
            features, hooks = _FEATURES.get(name, (_ALL_FEATURES, _ALL_HOOKS))
            info = {"params_100": params, "family": family, "input": size, **_HINTS.get(name, {})}
            info.update(features=list(features), model_hooks=list(hooks))
            rows.append((name, f"{_PKG}.{target}", aliases, description, info))
    return rows


@hookimpl
def register_models(register: Callable[..., Any]) -> None:
    """Register the zoo with the core."""
    for name, factory, aliases, description, info in model_table():
        register(name, factory, aliases=aliases, description=description, info=info)

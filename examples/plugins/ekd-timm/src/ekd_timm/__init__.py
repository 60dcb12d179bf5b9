"""ekd-timm: timm architectures as ekd teachers and students, registered as ``timm/<name>``.

Registration imports neither timm nor torch (``ekd --help`` and ``ekd list`` stay
fast): the architectures come from the curated static table below, and each factory
imports :mod:`ekd_timm.models` -- and timm -- only when a model is built.  Models are
always created with ``pretrained=False``: this plugin never downloads weights (bring
trained weights through ``ekd train`` or ``ekd import``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ekdcli.sdk.hookspecs import hookimpl

__version__ = "0.1.0"

PREFIX = "timm/"

# ViT/DeiT keep a fixed position-embedding grid unless told otherwise; dynamic_img_size
# interpolates it so the same architecture runs on 32x32 CIFAR images and on 224x224 ImageNet.
_DYNAMIC = {"dynamic_img_size": True}

# timm name, family, exact parameters at 100 classes / 3 channels (a test rebuilds each), defaults
MODELS: list[tuple[str, str, int, dict[str, Any]]] = [
    ("resnet10t", "resnet", 4973788, {}),
    ("resnet14t", "resnet", 8237532, {}),
    ("resnet18", "resnet", 11227812, {}),
    ("resnet34", "resnet", 21335972, {}),
    ("resnet50", "resnet", 23712932, {}),
    ("resnet101", "resnet", 42705060, {}),
    ("resnext50_32x4d", "resnet", 23184804, {}),
    ("seresnet50", "resnet", 26243924, {}),
    ("mobilenetv2_050", "mobilenet", 815780, {}),
    ("mobilenetv2_100", "mobilenet", 2351972, {}),
    ("mobilenetv3_small_050", "mobilenet", 670724, {}),
    ("mobilenetv3_small_100", "mobilenet", 1620356, {}),
    ("mobilenetv3_large_100", "mobilenet", 4330132, {}),
    ("mobilenetv4_conv_small", "mobilenet", 2621124, {}),
    ("efficientnet_b0", "efficientnet", 4135648, {}),
    ("efficientnet_lite0", "efficientnet", 3499108, {}),
    ("ghostnet_100", "mobile", 4029608, {}),
    ("mnasnet_100", "mobile", 3230412, {}),
    ("lcnet_050", "mobile", 727956, {}),
    ("regnetx_002", "regnet", 2352692, {}),
    ("regnety_002", "regnet", 2830896, {}),
    ("regnety_004", "regnet", 3947244, {}),
    ("regnety_008", "regnet", 5571068, {}),
    ("convnext_atto", "convnext", 3406620, {}),
    ("convnext_femto", "convnext", 4871284, {}),
    ("convnext_pico", "convnext", 8583972, {}),
    ("convnext_tiny", "convnext", 27897028, {}),
    ("vit_tiny_patch16_224", "vit", 5543716, _DYNAMIC),
    ("vit_small_patch16_224", "vit", 21704164, _DYNAMIC),
    ("deit_tiny_patch16_224", "vit", 5543716, _DYNAMIC),
    ("deit_small_patch16_224", "vit", 21704164, _DYNAMIC),
    ("densenet121", "densenet", 7056356, {}),
    ("repvgg_a0", "repvgg", 7956068, {}),
    ("mobilevit_xxs", "hybrid", 983124, {}),
    ("fastvit_t8", "hybrid", 3334132, {}),
    ("efficientvit_b0", "hybrid", 2257108, {}),
]


def make_factory(timm_name: str, defaults: dict[str, Any]) -> Callable[..., Any]:
    """A lazy factory ``(num_classes, in_channels=3, **options) -> nn.Module`` for one timm model."""

    def factory(num_classes: int, in_channels: int = 3, **options: Any) -> Any:
        from ekd_timm.models import create

        return create(timm_name, num_classes, in_channels, **{**defaults, **options})

    factory.__name__ = f"timm_{timm_name}"
    factory.__qualname__ = factory.__name__
    factory.__doc__ = f"timm.create_model({timm_name!r}, pretrained=False, ...) with ekd's forward contract."
    return factory


@hookimpl
def register_models(register: Callable[..., Any]) -> None:
    """Every curated architecture as ``timm/<timm name>``."""
    for timm_name, family, params, defaults in MODELS:
        register(
            f"{PREFIX}{timm_name}",
            make_factory(timm_name, defaults),
            description=f"timm {timm_name} (random init; never downloads weights)",
            info={
                "params_100": params,
                "family": f"timm-{family}",
                "input": "any (>= 32x32)",
                "timm_name": timm_name,
                "defaults": dict(defaults),
                # forward_intermediates gives the stage features and feature_info their channels
                "features": ["feats", "pooled_feat"],
                "model_hooks": ["stage_channels"],
            },
        )

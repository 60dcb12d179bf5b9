"""First-party datasets: CIFAR-100/10 (+ long-tailed), the embedded digits default, fake, ImageNet.

Only names and ``"module:attr"`` strings here: torch and the readers load on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ekd_plugins.datasets.options import FakeOptions
from ekdcli.sdk.hookspecs import hookimpl

_PKG = "ekd_plugins.datasets"
_CIFAR_ROOT = "an .npz file or a directory with the .npz or torchvision's folder"


def _in_memory(classes: int, channels: int = 3, **extra: Any) -> dict[str, Any]:
    return {"kind": "in-memory", "classes": classes, "image_size": 32, "channels": channels, **extra}


_LT_OPTIONS = {"imbalance_factor": 0.01, "profile": "exp|step", "seed": 0}
_LT_TEXT = "(n_min/n_max = imbalance_factor; test set balanced)"

# name, "module:function", aliases, description, info
_TABLE: list[tuple[str, str, tuple[str, ...], str, dict[str, Any]]] = [
    (
        "cifar100",
        "cifar:cifar100",
        ("cifar-100",),
        f"CIFAR-100, 32x32 RGB; --data-root is {_CIFAR_ROOT} (cifar-100-python/); --download",
        _in_memory(
            100,
            train=50_000,
            test=10_000,
            recognize={"npz_classes": 100, "npz_name": "cifar100.npz", "folder": "cifar-100-python"},
        ),
    ),
    (
        "cifar10",
        "cifar:cifar10",
        ("cifar-10",),
        f"CIFAR-10, 32x32 RGB; --data-root is {_CIFAR_ROOT} (cifar-10-batches-py/); --download",
        _in_memory(
            10,
            train=50_000,
            test=10_000,
            recognize={"npz_classes": 10, "npz_name": "cifar10.npz", "folder": "cifar-10-batches-py"},
        ),
    ),
    (
        "cifar100-lt",
        "longtail:cifar100_lt",
        ("cifar100_lt",),
        f"long-tailed CIFAR-100 {_LT_TEXT}",
        _in_memory(100, options=_LT_OPTIONS),
    ),
    (
        "cifar10-lt",
        "longtail:cifar10_lt",
        ("cifar10_lt",),
        f"long-tailed CIFAR-10 {_LT_TEXT}",
        _in_memory(10, options=_LT_OPTIONS),
    ),
    (
        "digits",
        "digits:digits",
        ("default", "embedded"),
        "embedded default: scikit-learn's 1,797 real handwritten digits, 32x32 grey, no download",
        _in_memory(10, channels=1, train=1442, test=355, options={"size": 32}),
    ),
    (
        "fake",
        "fake:fake",
        (),
        "seeded synthetic template+noise images for tests and smoke runs",
        _in_memory(10, options=FakeOptions),
    ),
    (
        "imagenet",
        "imagenet:imagenet",
        (),
        "ImageFolder root with train/ and val/ (ImageNet-1k or any), read by DataLoader workers",
        {
            "kind": "folder",
            "classes": 1000,
            "image_size": 224,
            "channels": 3,
            "recipe": "imagenet",
            "options": {"image_size": 224},
        },
    ),
]


@hookimpl
def register_datasets(register: Callable[..., Any]) -> None:
    for name, target, aliases, description, info in _TABLE:
        register(name, f"{_PKG}.{target}", aliases=aliases, description=description, info=info)

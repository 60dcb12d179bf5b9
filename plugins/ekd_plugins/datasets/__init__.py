"""First-party datasets: CIFAR-100/10 (+ long-tailed), the embedded digits default, fake, ImageNet.

Only names and ``"module:attr"`` strings here: torch and the readers load on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ekdcli.sdk.hookspecs import hookimpl

_PKG = "ekd_plugins.datasets"
_CIFAR_ROOT = "an .npz file or a directory with the .npz or torchvision's folder"


@hookimpl
def register_datasets(register: Callable[..., Any]) -> None:
    register(
        "cifar100",
        f"{_PKG}.cifar:cifar100",
        aliases=("cifar-100",),
        description=f"CIFAR-100, 32x32 RGB; --data-root is {_CIFAR_ROOT} (cifar-100-python/); --download",
        info={"kind": "in-memory", "classes": 100, "image_size": 32, "channels": 3},
    )
    register(
        "cifar10",
        f"{_PKG}.cifar:cifar10",
        aliases=("cifar-10",),
        description=f"CIFAR-10, 32x32 RGB; --data-root is {_CIFAR_ROOT} (cifar-10-batches-py/); --download",
        info={"kind": "in-memory", "classes": 10, "image_size": 32, "channels": 3},
    )
    options = {"imbalance_factor": 0.01, "profile": "exp|step", "seed": 0}
    register(
        "cifar100-lt",
        f"{_PKG}.longtail:cifar100_lt",
        aliases=("cifar100_lt",),
        description="long-tailed CIFAR-100 (n_min/n_max = imbalance_factor; test set balanced)",
        info={"kind": "in-memory", "classes": 100, "image_size": 32, "channels": 3, "options": options},
    )
    register(
        "cifar10-lt",
        f"{_PKG}.longtail:cifar10_lt",
        aliases=("cifar10_lt",),
        description="long-tailed CIFAR-10 (n_min/n_max = imbalance_factor; test set balanced)",
        info={"kind": "in-memory", "classes": 10, "image_size": 32, "channels": 3, "options": options},
    )
    register(
        "digits",
        f"{_PKG}.digits:digits",
        aliases=("default", "embedded"),
        description="embedded default: scikit-learn's 1,797 real handwritten digits, 32x32 grey, no download",
        info={
            "kind": "in-memory",
            "classes": 10,
            "image_size": 32,
            "channels": 1,
            "train": 1442,
            "test": 355,
        },
    )
    register(
        "fake",
        f"{_PKG}.fake:fake",
        description="seeded synthetic template+noise images for tests and smoke runs",
        info={
            "kind": "in-memory",
            "classes": 10,
            "image_size": 32,
            "channels": 3,
            "options": {"n_train": 512, "n_test": 128, "num_classes": 10, "seed": 0},
        },
    )
    register(
        "imagenet",
        f"{_PKG}.imagenet:imagenet",
        description="ImageFolder root with train/ and val/ (ImageNet-1k or any), read by DataLoader workers",
        info={"kind": "folder", "classes": 1000, "image_size": 224, "channels": 3, "recipe": "imagenet"},
    )

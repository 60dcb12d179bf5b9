"""CIFAR-100-LT and CIFAR-10-LT: the long-tailed builders of the SDK applied to CIFAR."""

from __future__ import annotations

from typing import Any

from ekd_plugins.datasets.cifar import load_cifar
from ekdcli.sdk.contracts import InMemoryDataset
from ekdcli.sdk.longtail import long_tail_counts, make_long_tailed
from ekdcli.sdk.options import as_bool, as_float, as_seed, check_names, owner


def _long_tailed_cifar(
    spec_name: str,
    root: str | None,
    download: Any,
    imbalance_factor: Any,
    profile: Any,
    seed: Any,
    options: dict,
) -> InMemoryDataset:
    name = f"{spec_name}-lt"
    who = owner("dataset", name)
    check_names(who, options, ("root", "download", "imbalance_factor", "profile", "seed"))
    factor = as_float(who, "imbalance_factor", imbalance_factor)
    profile = str(profile).strip().lower()
    long_tail_counts(2, 2, factor, profile)  # validate options before reading any data
    base = load_cifar(spec_name, root, as_bool(who, "download", download))
    return make_long_tailed(base, factor, profile, as_seed(who, "seed", seed), name=name)


def cifar100_lt(
    root: str | None = None,
    download: bool = False,
    imbalance_factor: float = 0.01,
    profile: str = "exp",
    seed: int = 0,
    **options: Any,
) -> InMemoryDataset:
    """CIFAR-100-LT: 500 images for class 0 down to ``500 * imbalance_factor`` for class 99."""
    return _long_tailed_cifar("cifar100", root, download, imbalance_factor, profile, seed, options)


def cifar10_lt(
    root: str | None = None,
    download: bool = False,
    imbalance_factor: float = 0.01,
    profile: str = "exp",
    seed: int = 0,
    **options: Any,
) -> InMemoryDataset:
    """CIFAR-10-LT: 5000 images for class 0 down to ``5000 * imbalance_factor`` for class 9."""
    return _long_tailed_cifar("cifar10", root, download, imbalance_factor, profile, seed, options)

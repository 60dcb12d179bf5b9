"""``digits-lt``: the core's embedded digits made long-tailed with a Zipf (power-law) profile.

Class ``c`` of ``C`` (class 0 is the head) keeps

    n_c = floor(n_max * (c + 1) ** -s),   s = ln(1 / imbalance_factor) / ln(C),

so the tail class keeps ``n_max * imbalance_factor`` images and the counts fall as a
power of the class rank (the profile of ImageNet-LT / Places-LT, which were sampled
from a Pareto distribution), unlike the exponential profile of CIFAR-LT.  The core's
``exp`` and ``step`` profiles are available too (``profile=``), through
``ekd_plugins.datasets.longtail.make_long_tailed``.

The images a class keeps are a seeded random subset, kept in their original order;
the test split stays balanced.  Everything works offline (the digits ship with
scikit-learn), so tests can train on it.
"""

from __future__ import annotations

import math
from typing import Any

from ekdcli.sdk.contracts import InMemoryDataset
from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.longtail import PROFILES as CORE_PROFILES
from ekdcli.sdk.longtail import class_sizes, make_long_tailed, subsample_per_class
from ekdcli.sdk.options import as_float, as_int, check_names, owner

PROFILES = ("zipf", *CORE_PROFILES)
WHO = owner("dataset", "digits-lt")
DEFAULT_IMBALANCE = 0.1  # 10:1 head to tail; digits have ~140 training images per class


def zipf_counts(num_classes: int, n_max: int, imbalance_factor: float) -> list[int]:
    """Images per class of the Zipf profile: ``floor(n_max * (c + 1) ** -s)``, tail = n_max * factor."""
    factor = as_float(WHO, "imbalance_factor", imbalance_factor)
    if not 0.0 < factor <= 1.0:
        raise UsageError(
            f"imbalance_factor must be in (0, 1] (n_min / n_max, e.g. 0.1 for ratio 10), got {factor}."
        )
    if num_classes < 1 or n_max < 1:
        raise UsageError(
            f"a long-tailed dataset needs classes with images, got {num_classes} classes x {n_max}."
        )
    if num_classes == 1:
        return [n_max]
    exponent = math.log(1.0 / factor) / math.log(num_classes)
    # The epsilon keeps exact products (e.g. 140 * 0.1 = 14) from flooring to one less.
    return [int(math.floor(n_max * (c + 1) ** -exponent + 1e-9)) for c in range(num_classes)]


def make_zipf_long_tailed(
    dataset: InMemoryDataset, imbalance_factor: float, seed: int = 0, *, name: str | None = None
) -> InMemoryDataset:
    """A Zipf long-tailed copy of ``dataset``; the head keeps as many images as the smallest class has."""
    counts = zipf_counts(dataset.num_classes, int(class_sizes(dataset).min()), imbalance_factor)
    return subsample_per_class(
        dataset,
        counts,
        seed,
        name=name or f"{dataset.name}-lt",
        imbalance_factor=float(imbalance_factor),
        profile="zipf",
    )


def digits_lt(
    root: str | None = None,
    download: bool = False,
    imbalance_factor: float = DEFAULT_IMBALANCE,
    profile: str = "zipf",
    seed: int = 0,
    size: int = 32,
    **options: Any,
) -> InMemoryDataset:
    """Long-tailed digits. ``root``/``download`` are accepted for the uniform signature and ignored."""
    check_names(WHO, options, ("imbalance_factor", "profile", "seed", "size"))
    factor = as_float(WHO, "imbalance_factor", imbalance_factor)
    profile = str(profile).strip().lower()
    seed = as_int(WHO, "seed", seed)
    if profile not in PROFILES:
        raise UsageError(f"unknown long-tail profile {profile!r}; use one of {', '.join(PROFILES)}.")
    zipf_counts(2, 2, factor)  # validate the factor before loading any data
    from ekdcli.sdk.plugins import registry

    # The core's dataset, through the registry: whatever plugin provides "digits" supplies the images.
    base = registry("datasets").get("digits").build(None, size=size)
    if profile == "zipf":
        return make_zipf_long_tailed(base, factor, seed, name="digits-lt")
    return make_long_tailed(base, factor, profile, seed, name="digits-lt")

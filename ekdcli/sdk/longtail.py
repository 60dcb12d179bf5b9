"""Long-tailed subsets of in-memory datasets (CIFAR-100-LT, CIFAR-10-LT and any other), for dataset plugins.

Class ``c`` of ``C`` keeps ``n_c`` training images:
* ``exp``:  ``n_c = floor(n_max * imbalance_factor ** (c / (C - 1)))`` (the LDAM-DRW / BALMS
  ``get_img_num_per_cls`` formula);
* ``step``: the first ``C // 2`` classes keep ``n_max``, the others ``floor(n_max * imbalance_factor)``.

``imbalance_factor = n_min / n_max`` in (0, 1]. Which images a class keeps is a seeded
random subset (one random key per image, the ``n_c`` smallest keys of each class win); the
kept images stay in their original order. LDAM uses ``np.random.shuffle`` per class instead,
so the subsets differ from theirs while the counts are identical. The test split is untouched
(balanced).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ekdcli.sdk.contracts import InMemoryDataset
from ekdcli.sdk.options import as_float, as_int, as_seed
from ekdcli.util.errors import UsageError

WHO = "the long-tailed builder"
PROFILES = ("exp", "step")


def long_tail_counts(
    num_classes: int, n_max: int, imbalance_factor: float, profile: str = "exp"
) -> list[int]:
    """Training images per class for a long-tailed profile (class 0 is the head)."""
    factor = as_float(WHO, "imbalance_factor", imbalance_factor)
    if not 0.0 < factor <= 1.0:
        raise UsageError(
            f"imbalance_factor must be in (0, 1] (n_min / n_max, e.g. 0.01 for ratio 100), got {factor}."
        )
    if profile not in PROFILES:
        raise UsageError(f"unknown long-tail profile {profile!r}; use one of {', '.join(PROFILES)}.")
    if num_classes < 1 or n_max < 1:
        raise UsageError(
            f"a long-tailed dataset needs classes with images, got {num_classes} classes x {n_max}."
        )
    if profile == "exp":
        if num_classes == 1:
            return [n_max]
        return [int(math.floor(n_max * factor ** (c / (num_classes - 1.0)))) for c in range(num_classes)]
    half = num_classes // 2
    return [n_max] * half + [int(math.floor(n_max * factor))] * (num_classes - half)


def class_sizes(dataset: InMemoryDataset) -> np.ndarray:
    """Training images per class; a class without any is refused (a long tail needs every class)."""
    labels = dataset.train_labels.cpu().numpy().astype(np.int64)
    available = np.bincount(labels, minlength=dataset.num_classes)[: dataset.num_classes]
    if available.min() < 1:
        empty = [dataset.class_names[c] for c in np.flatnonzero(available == 0)][:5]
        raise UsageError(
            f"{dataset.name} has no training images of class(es) {', '.join(empty)}; "
            "a long-tailed subset needs every class (drop --limit-train or raise it)."
        )
    return available


def check_counts(dataset: InMemoryDataset, counts: list[int], imbalance_factor: float) -> None:
    """Refuse counts that leave a class empty or ask a class for more images than it has."""
    available = class_sizes(dataset)
    head = max(counts)
    if min(counts) < 1:
        raise UsageError(
            f"imbalance_factor {imbalance_factor} leaves the smallest class with 0 of {head} images; "
            f"use a factor of at least {1.0 / head:g}."
        )
    short = [c for c in range(len(counts)) if counts[c] > available[c]]
    if short:
        c = short[0]
        raise UsageError(
            f"class {dataset.class_names[c]!r} has {int(available[c])} training images but the profile "
            f"asks for {counts[c]}; pass n_max of at most {int(available.min())}."
        )


def keep_per_class(labels: np.ndarray, counts: list[int], seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset with ``counts[c]`` samples of each class ``c``.

    One random key per sample; within each class the samples with the smallest keys win.
    Vectorized: one lexsort, no loop over classes.
    """
    keys = np.random.default_rng(seed).random(size=int(labels.shape[0]))
    order = np.lexsort((keys, labels))  # by class, then by random key
    sorted_labels = labels[order]
    first = np.searchsorted(sorted_labels, np.arange(len(counts)))
    rank = np.arange(labels.shape[0]) - first[sorted_labels]
    return np.sort(order[rank < np.asarray(counts)[sorted_labels]])


def subsample_per_class(
    dataset: InMemoryDataset, counts: list[int], seed: int, *, name: str, **made_by: Any
) -> InMemoryDataset:
    """A copy of ``dataset`` keeping ``counts[c]`` training images of class ``c`` (test split unchanged).

    ``info`` records the base dataset, the seed, the class counts and ``made_by`` (the profile and
    its parameters), so runs and evaluations can say what the data was.
    """
    check_counts(dataset, counts, float(made_by.get("imbalance_factor", 1.0)))
    labels = dataset.train_labels.cpu().numpy().astype(np.int64)
    keep = torch.from_numpy(keep_per_class(labels, counts, seed)).to(dataset.train_images.device)
    info: dict[str, Any] = dict(dataset.info)
    info.update(base=dataset.name, **made_by, seed=seed, class_counts=[int(n) for n in counts])
    return replace(
        dataset,
        name=name,
        train_images=dataset.train_images.index_select(0, keep).contiguous(),
        train_labels=dataset.train_labels.index_select(0, keep).contiguous(),
        info=info,
    )


def make_long_tailed(
    dataset: InMemoryDataset,
    imbalance_factor: float = 0.01,
    profile: str = "exp",
    seed: int = 0,
    *,
    n_max: int | None = None,
    name: str | None = None,
) -> InMemoryDataset:
    """A long-tailed copy of ``dataset``: training images subsampled per class, test split unchanged.

    ``n_max`` (the head class size) defaults to the smallest class count of the training set,
    so every class can supply its target and the profile is exact (CIFAR: 500 / 5000).
    """
    factor = as_float(WHO, "imbalance_factor", imbalance_factor)
    profile = str(profile).strip().lower()
    available = class_sizes(dataset)
    head = int(available.min()) if n_max is None else as_int(WHO, "n_max", n_max, minimum=1)
    counts = long_tail_counts(dataset.num_classes, head, factor, profile)
    return subsample_per_class(
        dataset,
        counts,
        as_seed(WHO, "seed", seed),
        name=name or f"{dataset.name}-lt",
        imbalance_factor=factor,
        profile=profile,
    )

"""The embedded default dataset: scikit-learn's 1,797 real 8x8 handwritten digits, no download.

Pixels 0..16 are scaled to 0..255 and the images upsampled (bilinear) to 32x32, one channel,
so every CIFAR model runs on them. The split is stratified and fixed: within each class, in
scikit-learn's order, every fifth image (positions 4, 9, 14, ...) is a test image (20%).
Digits are not mirror-symmetric, so there is no horizontal flip.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ekd_plugins.datasets.in_memory import refuse_root
from ekdcli.sdk.contracts import InMemoryDataset
from ekdcli.sdk.data import from_arrays
from ekdcli.sdk.options import as_int, check_names, owner

TEST_EVERY = 5  # every 5th image of a class is a test image


def load_digit_images(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 ``[N, 1, size, size]`` and their int64 labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = torch.as_tensor(np.asarray(bunch.images, dtype=np.float32)).unsqueeze(1) * (255.0 / 16.0)
    if size != pixels.shape[-1]:
        pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)
    images = pixels.round().clamp_(0, 255).to(torch.uint8).numpy()
    return images, np.asarray(bunch.target, dtype=np.int64)


def stratified_test_mask(labels: np.ndarray, every: int = TEST_EVERY) -> np.ndarray:
    """True for every ``every``-th image of each class (rank ``every-1``, ``2*every-1``, ...)."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    first = np.searchsorted(sorted_labels, sorted_labels)  # first position of each sample's class
    rank = np.empty_like(labels)
    rank[order] = np.arange(labels.shape[0]) - first
    return rank % every == every - 1


def digits(
    root: str | None = None, download: bool = False, size: int = 32, **options: Any
) -> InMemoryDataset:
    """The embedded default: 10 digit classes, 1 channel, ``size`` x ``size`` (32 by default).

    ``root`` and ``download`` are accepted for a uniform factory signature: the data ship with
    scikit-learn, so a root is refused rather than silently ignored.
    """
    who = owner("dataset", "digits")
    refuse_root("digits", root)
    check_names(who, options, ("size",))
    size = as_int(who, "size", size, minimum=8)
    images, labels = load_digit_images(size)
    test = stratified_test_mask(labels)
    return from_arrays(
        "digits",
        images[~test],
        labels[~test],
        images[test],
        labels[test],
        class_names=[str(d) for d in range(10)],
        num_classes=10,
        crop_padding=max(1, size // 8),
        hflip=False,
        layout="NCHW",
        info={
            "source": "sklearn.datasets.load_digits",
            "test_every": TEST_EVERY,
            "upsampled_to": size,
            "recipe": "quick",  # small data: the short recipe of ekdcli.engine.recipe
        },
    )

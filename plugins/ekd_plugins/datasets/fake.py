"""Seeded synthetic data for tests and smoke runs: learnable, tiny, no files.

Each class has a smooth random template (a 4x4 grid of random colours upsampled to the
image size, so random crops barely change it); a sample is its class template plus
Gaussian pixel noise, clamped to 0..255. Labels are balanced and shuffled.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ekd_plugins.datasets.in_memory import refuse_root
from ekd_plugins.datasets.options import FakeOptions
from ekdcli.sdk.contracts import InMemoryDataset
from ekdcli.sdk.data import from_arrays
from ekdcli.sdk.options import owner, read_options

GRID = 4  # template resolution before upsampling


def class_templates(
    num_classes: int, channels: int, height: int, width: int, generator: torch.Generator
) -> torch.Tensor:
    """float32 ``[K, C, H, W]`` templates with values in [32, 224] (noise rarely clips)."""
    coarse = torch.rand(num_classes, channels, GRID, GRID, generator=generator) * 192.0 + 32.0
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


def _samples(
    templates: torch.Tensor, n: int, noise: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    k = templates.shape[0]
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=generator)]
    pixels = templates[labels] + noise * torch.randn((n, *templates.shape[1:]), generator=generator)
    return pixels.round().clamp_(0, 255).to(torch.uint8), labels


def fake(root: str | None = None, download: bool = False, **options: Any) -> InMemoryDataset:
    """Synthetic template + noise images; the same seed gives the same bytes everywhere (CPU RNG).

    ``options`` are those of :class:`~ekd_plugins.datasets.options.FakeOptions`.
    """
    refuse_root("fake", root)
    opts = read_options(owner("dataset", "fake"), FakeOptions, options)
    n_train, n_test, num_classes = opts["n_train"], opts["n_test"], opts["num_classes"]
    channels, height, width, seed = opts["channels"], opts["height"], opts["width"], opts["seed"]
    noise = max(0.0, opts["noise"])
    generator = torch.Generator().manual_seed(seed)
    templates = class_templates(num_classes, channels, height, width, generator)
    x_train, y_train = _samples(templates, n_train, noise, generator)
    x_test, y_test = _samples(templates, n_test, noise, generator)
    return from_arrays(
        "fake",
        x_train,
        y_train,
        x_test,
        y_test,
        class_names=[f"class{c}" for c in range(num_classes)],
        crop_padding=4,
        hflip=False,
        layout="NCHW",
        info={"seed": seed, "noise": noise, "synthetic": True, "recipe": "quick"},
    )

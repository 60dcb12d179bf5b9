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
from ekdcli.sdk.contracts import InMemoryDataset
from ekdcli.sdk.data import from_arrays
from ekdcli.sdk.options import as_float, as_int, as_seed, check_names, owner

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


def fake(
    root: str | None = None,
    download: bool = False,
    n_train: int = 512,
    n_test: int = 128,
    num_classes: int = 10,
    channels: int = 3,
    height: int = 32,
    width: int = 32,
    seed: int = 0,
    noise: float = 40.0,
    **options: Any,
) -> InMemoryDataset:
    """Synthetic template + noise images; the same seed gives the same bytes everywhere (CPU RNG)."""
    refuse_root("fake", root)
    who = owner("dataset", "fake")
    check_names(
        who,
        options,
        ("n_train", "n_test", "num_classes", "channels", "height", "width", "seed", "noise"),
    )
    n_train = as_int(who, "n_train", n_train, minimum=1)
    n_test = as_int(who, "n_test", n_test, minimum=1)
    num_classes = as_int(who, "num_classes", num_classes, minimum=2)
    channels = as_int(who, "channels", channels, minimum=1)
    height = as_int(who, "height", height, minimum=4)
    width = as_int(who, "width", width, minimum=4)
    noise = max(0.0, as_float(who, "noise", noise))
    seed = as_seed(who, "seed", seed)
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

"""ConvMixer (Trockman & Kolter, "Patches Are All You Need?", TMLR 2023), sized for 32x32 images.

Patch embedding (a ``patch_size`` x ``patch_size`` convolution with the same stride),
then ``depth`` blocks of: a residual depthwise convolution (spatial mixing) and a
pointwise convolution (channel mixing), each followed by GELU and batch norm; global
average pooling and a linear classifier.  ``convmixer_tiny`` (dim 128, depth 4,
kernel 5, patch 2) keeps a 16x16 token grid on CIFAR-sized inputs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.options import as_int, owner

ModelOutput = torch.Tensor | tuple[torch.Tensor, dict[str, Any]]


WHO = owner("model", "convmixer_tiny")


class MixerBlock(nn.Module):
    """``x + BN(GELU(depthwise(x)))`` then ``BN(GELU(pointwise(.)))``."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        # "same" padding keeps the token grid for odd and even kernels alike.
        self.depthwise = nn.Conv2d(dim, dim, kernel_size, groups=dim, padding="same")
        self.bn1 = nn.BatchNorm2d(dim)
        self.pointwise = nn.Conv2d(dim, dim, kernel_size=1)
        self.bn2 = nn.BatchNorm2d(dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.bn1(self.act(self.depthwise(x)))
        return self.bn2(self.act(self.pointwise(x)))


class ConvMixer(nn.Module):
    """ConvMixer-``dim``/``depth``; ``forward(x, return_features=True)`` adds the stage outputs
    (``feats``: the stem and each block) and their global average (``pooled_feat``)."""

    def __init__(
        self,
        num_classes: int = 100,
        in_channels: int = 3,
        dim: int = 128,
        depth: int = 4,
        kernel_size: int = 5,
        patch_size: int = 2,
    ) -> None:
        super().__init__()
        num_classes = as_int(WHO, "num_classes", num_classes, minimum=1)
        in_channels = as_int(WHO, "in_channels", in_channels, minimum=1)
        dim = as_int(WHO, "dim", dim, minimum=1)
        depth = as_int(WHO, "depth", depth, minimum=0)
        kernel_size = as_int(WHO, "kernel_size", kernel_size, minimum=1)
        patch_size = as_int(WHO, "patch_size", patch_size, minimum=1)
        self.stem = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.stem_bn = nn.BatchNorm2d(dim)
        self.act = nn.GELU()
        self.blocks = nn.ModuleList(MixerBlock(dim, kernel_size) for _ in range(depth))
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> ModelOutput:
        x = self.stem_bn(self.act(self.stem(x)))
        feats = [x]
        for block in self.blocks:
            x = block(x)
            if return_features:
                feats.append(x)
        pooled = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        logits = self.fc(pooled)
        if return_features:
            # Blocks end in a BN after a GELU: no pre-ReLU tensors (the registry info says so).
            return logits, {"feats": feats, "preact_feats": [], "pooled_feat": pooled}
        return logits

    def get_stage_channels(self) -> list[int]:
        """The channels of ``feats`` (the ``stage_channels`` hook)."""
        return [self.stem_bn.num_features] * (len(self.blocks) + 1)


def convmixer_tiny(num_classes: int = 100, in_channels: int = 3, **options: Any) -> ConvMixer:
    """The registered factory: ConvMixer-128/4, kernel 5, patch 2 (override any of them by option)."""
    settings = {"dim": 128, "depth": 4, "kernel_size": 5, "patch_size": 2}
    unknown = sorted(set(options) - set(settings))
    if unknown:
        raise UsageError(
            f"convmixer_tiny does not take option(s) {', '.join(unknown)}; it accepts {', '.join(settings)}."
        )
    settings.update(options)
    return ConvMixer(num_classes, in_channels, **settings)

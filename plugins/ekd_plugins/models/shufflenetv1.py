"""ShuffleNet V1 (groups = 3) for CIFAR.

Parameter names follow mdistiller / RepDistiller ``models/cifar/ShuffleNetv1.py``:
``conv1``, ``bn1``, ``layer{1,2,3}.{i}.conv1/bn1/conv2/bn2/conv3/bn3``, ``linear``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ekd_plugins.models._common import (
    ModelOutput,
    channel_shuffle,
    check_in_channels,
    global_pool,
    run_stage,
    with_features,
)

_STEM = 24


class Bottleneck(nn.Module):
    """Grouped 1x1, shuffle, depthwise 3x3, grouped 1x1; stride 2 concatenates an avg-pooled shortcut."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, groups: int) -> None:
        super().__init__()
        self.stride = stride
        mid_planes = out_planes // 4
        # The first block after the narrow stem uses an ungrouped 1x1 conv.
        self.first_groups = 1 if in_planes == _STEM else groups
        self.conv1 = nn.Conv2d(in_planes, mid_planes, kernel_size=1, groups=self.first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_planes)
        self.conv2 = nn.Conv2d(
            mid_planes, mid_planes, kernel_size=3, stride=stride, padding=1, groups=mid_planes, bias=False
        )
        self.bn2 = nn.BatchNorm2d(mid_planes)
        self.conv3 = nn.Conv2d(mid_planes, out_planes, kernel_size=1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)

    def _preact(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.first_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:
            return torch.cat([out, F.avg_pool2d(x, 3, stride=2, padding=1)], 1)
        return out + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self._preact(x))

    def forward_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output, output before the final ReLU)``."""
        preact = self._preact(x)
        return F.relu(preact), preact


class ShuffleNetV1(nn.Module):
    """1x1 stem (no downsampling) and three stages; 32x32 inputs end at 4x4."""

    def __init__(
        self,
        out_planes: tuple[int, int, int] = (240, 480, 960),
        num_blocks: tuple[int, int, int] = (4, 8, 4),
        groups: int = 3,
        num_classes: int = 100,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(check_in_channels(in_channels), _STEM, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(_STEM)
        self.in_planes = _STEM
        self.layer1 = self._make_layer(out_planes[0], num_blocks[0], groups)
        self.layer2 = self._make_layer(out_planes[1], num_blocks[1], groups)
        self.layer3 = self._make_layer(out_planes[2], num_blocks[2], groups)
        self.linear = nn.Linear(out_planes[2], num_classes)
        self.stage_channels = [_STEM, *out_planes]

    def _make_layer(self, out_planes: int, num_blocks: int, groups: int) -> nn.Sequential:
        layers = []
        for i in range(num_blocks):
            # The strided first block concatenates its input, so its branch makes the rest.
            branch = out_planes - self.in_planes if i == 0 else out_planes
            layers.append(Bottleneck(self.in_planes, branch, stride=2 if i == 0 else 1, groups=groups))
            self.in_planes = out_planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> ModelOutput:
        if return_features:
            return self._forward_features(x)
        x = F.relu(self.bn1(self.conv1(x)))
        return self.linear(global_pool(self.layer3(self.layer2(self.layer1(x)))))

    def _forward_features(self, x: torch.Tensor) -> ModelOutput:
        f0 = F.relu(self.bn1(self.conv1(x)))
        f1, pre1 = run_stage(self.layer1, f0)
        f2, pre2 = run_stage(self.layer2, f1)
        f3, pre3 = run_stage(self.layer3, f2)
        pooled = global_pool(f3)
        return with_features(self.linear(pooled), [f0, f1, f2, f3], [f0, pre1, pre2, pre3], pooled)

    # No get_bn_before_relu: a stage's pre-ReLU output is a concatenation or a sum, not one BN's.
    def get_stage_channels(self) -> list[int]:
        """The channels of ``feats`` (mdistiller's ShuffleV1 has no such method)."""
        return list(self.stage_channels)


def shufflev1(num_classes: int = 100, in_channels: int = 3) -> ShuffleNetV1:
    """mdistiller's ``ShuffleV1``: out planes 240/480/960, blocks 4/8/4, 3 groups."""
    return ShuffleNetV1(num_classes=num_classes, in_channels=in_channels)

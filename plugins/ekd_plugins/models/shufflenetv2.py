"""ShuffleNet V2 (net size 1) for CIFAR.

Parameter names follow mdistiller / RepDistiller ``models/cifar/ShuffleNetv2.py``:
``conv1``, ``bn1``, ``layer{1,2,3}.0.conv1..conv5/bn1..bn5`` (down-sampling block),
``layer{1,2,3}.{i>0}.conv1..conv3/bn1..bn3``, ``conv2``, ``bn2``, ``linear``.
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
# net size -> (stage widths + final 1x1 width, blocks per stage); mdistiller's ShuffleV2 is size 1.
CONFIGS: dict[float, tuple[tuple[int, int, int, int], tuple[int, int, int]]] = {
    0.5: ((48, 96, 192, 1024), (3, 7, 3)),
    1.0: ((116, 232, 464, 1024), (3, 7, 3)),
    1.5: ((176, 352, 704, 1024), (3, 7, 3)),
    2.0: ((224, 488, 976, 2048), (3, 7, 3)),
}


class BasicBlock(nn.Module):
    """Split channels in half, transform one half, concatenate, shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.conv1 = nn.Conv2d(half, half, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, kernel_size=3, padding=1, groups=half, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, half, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(half)

    def _branch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(kept half, transformed half before its last ReLU)``."""
        half = x.shape[1] // 2
        kept, moved = x[:, :half], x[:, half:]
        out = F.relu(self.bn1(self.conv1(moved)))
        out = self.bn2(self.conv2(out))
        return kept, self.bn3(self.conv3(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, out = self._branch(x)
        return channel_shuffle(torch.cat([kept, F.relu(out)], 1), 2)

    def forward_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output, the concatenation before the ReLU and the shuffle)`` (mdistiller's preact)."""
        kept, out = self._branch(x)
        return channel_shuffle(torch.cat([kept, F.relu(out)], 1), 2), torch.cat([kept, out], 1)


class DownBlock(nn.Module):
    """Two strided branches (depthwise-pointwise and pointwise-depthwise-pointwise), concatenated."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.conv1 = nn.Conv2d(
            in_channels, in_channels, 3, stride=2, padding=1, groups=in_channels, bias=False
        )
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, kernel_size=3, stride=2, padding=1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, kernel_size=1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return channel_shuffle(torch.cat([left, right], 1), 2)


class ShuffleNetV2(nn.Module):
    """1x1 stem (no downsampling), three stages, a final 1x1 conv; 32x32 inputs end at 4x4."""

    def __init__(self, net_size: float = 1.0, num_classes: int = 100, in_channels: int = 3) -> None:
        super().__init__()
        if net_size not in CONFIGS:
            raise ValueError(f"ShuffleNetV2 net_size must be one of {sorted(CONFIGS)}, got {net_size}")
        widths, num_blocks = CONFIGS[net_size]
        self.conv1 = nn.Conv2d(check_in_channels(in_channels), _STEM, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(_STEM)
        self.in_channels = _STEM
        self.layer1 = self._make_layer(widths[0], num_blocks[0])
        self.layer2 = self._make_layer(widths[1], num_blocks[1])
        self.layer3 = self._make_layer(widths[2], num_blocks[2])
        self.conv2 = nn.Conv2d(widths[2], widths[3], kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(widths[3])
        self.linear = nn.Linear(widths[3], num_classes)
        self.stage_channels = [_STEM, *widths[:3]]

    def _make_layer(self, out_channels: int, num_blocks: int) -> nn.Sequential:
        layers: list[nn.Module] = [DownBlock(self.in_channels, out_channels)]
        layers += [BasicBlock(out_channels) for _ in range(num_blocks)]
        self.in_channels = out_channels
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> ModelOutput:
        if return_features:
            return self._forward_features(x)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(global_pool(F.relu(self.bn2(self.conv2(x)))))

    def _forward_features(self, x: torch.Tensor) -> ModelOutput:
        f0 = F.relu(self.bn1(self.conv1(x)))
        f1, pre1 = run_stage(self.layer1, f0)
        f2, pre2 = run_stage(self.layer2, f1)
        f3, pre3 = run_stage(self.layer3, f2)
        pooled = global_pool(F.relu(self.bn2(self.conv2(f3))))
        return with_features(self.linear(pooled), [f0, f1, f2, f3], [f0, pre1, pre2, pre3], pooled)

    # No get_bn_before_relu: a stage's pre-ReLU output is half BN output, half the block's input.
    def get_stage_channels(self) -> list[int]:
        """The channels of ``feats``."""
        return list(self.stage_channels)


def shufflev2(num_classes: int = 100, in_channels: int = 3, net_size: float = 1.0) -> ShuffleNetV2:
    """mdistiller's ``ShuffleV2`` (net size 1: widths 116/232/464, final 1024)."""
    return ShuffleNetV2(net_size, num_classes, in_channels)

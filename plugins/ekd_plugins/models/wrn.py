"""Wide ResNets for CIFAR (wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2).

Parameter names follow mdistiller / RepDistiller ``models/cifar/wrn.py``:
``conv1``, ``block{1,2,3}.layer.{i}.bn1/conv1/bn2/conv2/convShortcut``, ``bn1``, ``fc``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ekd_plugins.models._common import ModelOutput, check_in_channels, global_pool, with_features


class BasicBlock(nn.Module):
    """Pre-activation block (BN-ReLU-conv x2); a 1x1 conv shortcut when the width changes."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes
        self.convShortcut: nn.Module | None = None  # camelCase: the checkpoint key name
        if not self.equal_in_out:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_preact(x)[0]

    def forward_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output, bn1(x))``: the block's input after its first BN, before the ReLU."""
        preact = self.bn1(x)
        act = F.relu(preact)
        out = F.relu(self.bn2(self.conv1(act)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        # The reference adds the raw input when widths match, the projected activation otherwise.
        shortcut = x if self.convShortcut is None else self.convShortcut(act)
        return shortcut + out, preact


class NetworkBlock(nn.Module):
    """A stage of ``n`` blocks; the first one may change width and stride."""

    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *[
                BasicBlock(
                    in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, drop_rate
                )
                for i in range(n)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def forward_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output, the first block's bn1 of the input)``: the input's pre-activation."""
        out, preact = self.layer[0].forward_preact(x)
        for block in self.layer[1:]:
            out = block(out)
        return out, preact


class WideResNet(nn.Module):
    """WRN-depth-widen_factor for 32x32 inputs."""

    def __init__(
        self,
        depth: int,
        widen_factor: int,
        num_classes: int = 100,
        in_channels: int = 3,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(
            check_in_channels(in_channels), widths[0], kernel_size=3, padding=1, bias=False
        )
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1, drop_rate)
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2, drop_rate)
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        self.stage_channels = widths
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> ModelOutput:
        if return_features:
            return self._forward_features(x)
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(global_pool(F.relu(self.bn1(x))))

    def _forward_features(self, x: torch.Tensor) -> ModelOutput:
        # Pre-activation blocks: a stage's pre-ReLU output is the next BN applied to it (mdistiller
        # applies those BNs a second time; here they are the ones of the forward pass itself).
        f0 = self.conv1(x)
        f1 = self.block1(f0)
        f2, pre1 = self.block2.forward_preact(f1)
        f3, pre2 = self.block3.forward_preact(f2)
        pre3 = self.bn1(f3)
        pooled = global_pool(F.relu(pre3))
        return with_features(self.fc(pooled), [f0, f1, f2, f3], [f0, pre1, pre2, pre3], pooled)

    def get_bn_before_relu(self) -> list[nn.BatchNorm2d]:
        """The BNs that make ``preact_feats[1:]``: blocks 2 and 3's first ``bn1``, the final ``bn1``."""
        return [self.block2.layer[0].bn1, self.block3.layer[0].bn1, self.bn1]

    def get_stage_channels(self) -> list[int]:
        """The channels of ``feats``."""
        return list(self.stage_channels)


def wrn_16_1(num_classes: int = 100, in_channels: int = 3, drop_rate: float = 0.0) -> WideResNet:
    return WideResNet(16, 1, num_classes, in_channels, drop_rate)


def wrn_16_2(num_classes: int = 100, in_channels: int = 3, drop_rate: float = 0.0) -> WideResNet:
    return WideResNet(16, 2, num_classes, in_channels, drop_rate)


def wrn_40_1(num_classes: int = 100, in_channels: int = 3, drop_rate: float = 0.0) -> WideResNet:
    return WideResNet(40, 1, num_classes, in_channels, drop_rate)


def wrn_40_2(num_classes: int = 100, in_channels: int = 3, drop_rate: float = 0.0) -> WideResNet:
    return WideResNet(40, 2, num_classes, in_channels, drop_rate)

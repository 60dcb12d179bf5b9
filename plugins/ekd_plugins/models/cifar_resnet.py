"""CIFAR ResNets (resnet8 ... resnet110, resnet8x4, resnet32x4).

Parameter names and shapes follow mdistiller / RepDistiller ``models/cifar/resnet.py``
(``conv1``, ``bn1``, ``layer{1,2,3}.{i}.conv1/bn1/conv2/bn2/downsample.{0,1}``, ``fc``),
so their published checkpoints load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ekd_plugins.models._common import ModelOutput, check_in_channels, global_pool, run_stage, with_features


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def _preact(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self._preact(x))

    def forward_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output, output before the final ReLU)``."""
        preact = self._preact(x)
        return F.relu(preact), preact


class CifarResNet(nn.Module):
    """A 3-stage ResNet of depth ``6n + 2`` for 32x32 inputs."""

    def __init__(
        self, depth: int, num_filters: list[int], num_classes: int = 100, in_channels: int = 3
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        blocks = (depth - 2) // 6
        self.inplanes = num_filters[0]
        self.conv1 = nn.Conv2d(
            check_in_channels(in_channels), num_filters[0], kernel_size=3, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(num_filters[0])
        self.layer1 = self._make_layer(num_filters[1], blocks, stride=1)
        self.layer2 = self._make_layer(num_filters[2], blocks, stride=2)
        self.layer3 = self._make_layer(num_filters[3], blocks, stride=2)
        self.fc = nn.Linear(num_filters[3], num_classes)
        self.stage_channels = list(num_filters)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(self.inplanes, planes, stride)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> ModelOutput:
        if return_features:
            return self._forward_features(x)
        x = F.relu(self.bn1(self.conv1(x)))
        return self.fc(global_pool(self.layer3(self.layer2(self.layer1(x)))))

    def _forward_features(self, x: torch.Tensor) -> ModelOutput:
        f0 = F.relu(self.bn1(self.conv1(x)))
        f1, pre1 = run_stage(self.layer1, f0)
        f2, pre2 = run_stage(self.layer2, f1)
        f3, pre3 = run_stage(self.layer3, f2)
        pooled = global_pool(f3)
        return with_features(self.fc(pooled), [f0, f1, f2, f3], [f0, pre1, pre2, pre3], pooled)

    def get_bn_before_relu(self) -> list[nn.BatchNorm2d]:
        """The batch norm before the last ReLU of each stage (its last block's ``bn2``)."""
        return [stage[-1].bn2 for stage in (self.layer1, self.layer2, self.layer3)]

    def get_stage_channels(self) -> list[int]:
        """The channels of ``feats``."""
        return list(self.stage_channels)


_NARROW = [16, 16, 32, 64]
_WIDE = [32, 64, 128, 256]  # the "x4" variants


def resnet8(num_classes: int = 100, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(8, _NARROW, num_classes, in_channels)


def resnet14(num_classes: int = 100, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(14, _NARROW, num_classes, in_channels)


def resnet20(num_classes: int = 100, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(20, _NARROW, num_classes, in_channels)


def resnet32(num_classes: int = 100, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(32, _NARROW, num_classes, in_channels)


def resnet44(num_classes: int = 100, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(44, _NARROW, num_classes, in_channels)


def resnet56(num_classes: int = 100, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(56, _NARROW, num_classes, in_channels)


def resnet110(num_classes: int = 100, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(110, _NARROW, num_classes, in_channels)


def resnet8x4(num_classes: int = 100, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(8, _WIDE, num_classes, in_channels)


def resnet32x4(num_classes: int = 100, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(32, _WIDE, num_classes, in_channels)

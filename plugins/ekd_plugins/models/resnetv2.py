"""CIFAR variants of ResNet18/34/50 (3x3 stem, no max pool).

Parameter names follow mdistiller / RepDistiller ``models/cifar/resnetv2.py``
(``conv1``, ``bn1``, ``layer{1..4}.{i}.conv*/bn*/shortcut.{0,1}``, ``linear``);
mdistiller calls these ``ResNet18`` / ``ResNet34`` / ``ResNet50``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ekd_plugins.models._common import ModelOutput, check_in_channels, global_pool, run_stage, with_features


def _projection(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """1x1 conv + BN shortcut when shape changes; an empty Sequential (identity) otherwise."""
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
    )


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _projection(in_planes, planes, stride)

    def _preact(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return out + self.shortcut(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self._preact(x))

    def forward_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output, output before the final ReLU)``."""
        preact = self._preact(x)
        return F.relu(preact), preact


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut = _projection(in_planes, planes * 4, stride)

    def _preact(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self._preact(x))

    def forward_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output, output before the final ReLU)``."""
        preact = self._preact(x)
        return F.relu(preact), preact


class ResNetV2(nn.Module):
    """Four stages (64/128/256/512 planes) on a stride-1 3x3 stem."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: list[int],
        num_classes: int = 100,
        in_channels: int = 3,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(check_in_channels(in_channels), 64, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], 1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], 2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], 2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], 2)
        self.linear = nn.Linear(512 * block.expansion, num_classes)
        self.stage_channels = [64 * block.expansion * 2**i for i in range(4)]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # each residual branch starts as zero (Goyal et al., 2017)
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> ModelOutput:
        if return_features:
            return self._forward_features(x)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.linear(global_pool(x))

    def _forward_features(self, x: torch.Tensor) -> ModelOutput:
        f0 = F.relu(self.bn1(self.conv1(x)))
        f1, pre1 = run_stage(self.layer1, f0)
        f2, pre2 = run_stage(self.layer2, f1)
        f3, pre3 = run_stage(self.layer3, f2)
        f4, pre4 = run_stage(self.layer4, f3)
        pooled = global_pool(f4)
        feats, preacts = [f0, f1, f2, f3, f4], [f0, pre1, pre2, pre3, pre4]
        return with_features(self.linear(pooled), feats, preacts, pooled)

    def get_bn_before_relu(self) -> list[nn.BatchNorm2d]:
        """The batch norm before the last ReLU of stages 1-4 (the last block's last BN)."""
        last = "bn3" if isinstance(self.layer1[0], Bottleneck) else "bn2"
        stages = (self.layer1, self.layer2, self.layer3, self.layer4)
        return [getattr(stage[-1], last) for stage in stages]

    def get_stage_channels(self) -> list[int]:
        """The channels of ``feats[1:]`` (mdistiller's values for ResNet50; it says the same
        256/512/1024/2048 for ResNet18/34, whose stages have 64/128/256/512)."""
        return list(self.stage_channels)


def resnet18(num_classes: int = 100, in_channels: int = 3, zero_init_residual: bool = False) -> ResNetV2:
    return ResNetV2(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, zero_init_residual)


def resnet34(num_classes: int = 100, in_channels: int = 3, zero_init_residual: bool = False) -> ResNetV2:
    return ResNetV2(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, zero_init_residual)


def resnet50(num_classes: int = 100, in_channels: int = 3, zero_init_residual: bool = False) -> ResNetV2:
    return ResNetV2(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, zero_init_residual)

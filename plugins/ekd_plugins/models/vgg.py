"""VGG with batch norm for CIFAR (vgg8, vgg11, vgg13, vgg16, vgg19).

These are the ``vgg*_bn`` models of mdistiller / RepDistiller ``models/cifar/vgg.py``
(their ``vgg13`` teacher is ``vgg13_bn``). Parameter names: ``block{0..4}.{i}`` (conv,
BN, ReLU triples; the last ReLU of each block is dropped) and ``classifier``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ekd_plugins.models._common import ModelOutput, check_in_channels, global_pool, with_features

# Output widths of the convolutions in each of the five blocks.
CONFIGS: dict[str, list[list[int]]] = {
    "S": [[64], [128], [256], [512], [512]],  # vgg8
    "A": [[64], [128], [256, 256], [512, 512], [512, 512]],  # vgg11
    "B": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],  # vgg13
    "D": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],  # vgg16
    "E": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],  # vgg19
}


def _make_block(widths: list[int], in_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, kernel_size=3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        in_channels = width
    return nn.Sequential(*layers[:-1])  # the forward applies the block's last ReLU


class VGG(nn.Module):
    """Five conv blocks separated by 2x2 max pools, global average pool, one linear layer."""

    def __init__(self, cfg: list[list[int]], num_classes: int = 100, in_channels: int = 3) -> None:
        super().__init__()
        self.block0 = _make_block(cfg[0], check_in_channels(in_channels))
        self.block1 = _make_block(cfg[1], cfg[0][-1])
        self.block2 = _make_block(cfg[2], cfg[1][-1])
        self.block3 = _make_block(cfg[3], cfg[2][-1])
        self.block4 = _make_block(cfg[4], cfg[3][-1])
        self.classifier = nn.Linear(cfg[4][-1], num_classes)
        self.stage_channels = [c[-1] for c in cfg]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> ModelOutput:
        if return_features:
            return self._forward_features(x)
        large = x.shape[2] >= 64  # the reference adds a fourth pool only for 64x64 inputs
        x = F.relu(self.block0(x))
        x = F.relu(self.block1(F.max_pool2d(x, 2)))
        x = F.relu(self.block2(F.max_pool2d(x, 2)))
        x = F.relu(self.block3(F.max_pool2d(x, 2)))
        x = F.relu(self.block4(F.max_pool2d(x, 2) if large else x))
        return self.classifier(global_pool(x))

    def _forward_features(self, x: torch.Tensor) -> ModelOutput:
        large = x.shape[2] >= 64
        f0 = F.relu(self.block0(x))
        pre1 = self.block1(F.max_pool2d(f0, 2))
        f1 = F.relu(pre1)
        pre2 = self.block2(F.max_pool2d(f1, 2))
        f2 = F.relu(pre2)
        pre3 = self.block3(F.max_pool2d(f2, 2))
        f3 = F.relu(pre3)
        pre4 = self.block4(F.max_pool2d(f3, 2) if large else f3)
        f4 = F.relu(pre4)
        pooled = global_pool(f4)
        feats, preacts = [f0, f1, f2, f3, f4], [f0, pre1, pre2, pre3, pre4]
        return with_features(self.classifier(pooled), feats, preacts, pooled)

    def get_bn_before_relu(self) -> list[nn.BatchNorm2d]:
        """The last batch norm of blocks 1-4 (each block ends with it: its ReLU is the forward's)."""
        return [block[-1] for block in (self.block1, self.block2, self.block3, self.block4)]

    def get_stage_channels(self) -> list[int]:
        """The channels of ``feats``."""
        return list(self.stage_channels)


def vgg8(num_classes: int = 100, in_channels: int = 3) -> VGG:
    return VGG(CONFIGS["S"], num_classes, in_channels)


def vgg11(num_classes: int = 100, in_channels: int = 3) -> VGG:
    return VGG(CONFIGS["A"], num_classes, in_channels)


def vgg13(num_classes: int = 100, in_channels: int = 3) -> VGG:
    return VGG(CONFIGS["B"], num_classes, in_channels)


def vgg16(num_classes: int = 100, in_channels: int = 3) -> VGG:
    return VGG(CONFIGS["D"], num_classes, in_channels)


def vgg19(num_classes: int = 100, in_channels: int = 3) -> VGG:
    return VGG(CONFIGS["E"], num_classes, in_channels)

"""MobileNetV2 for CIFAR; the default width 0.5 is the ``mobile_half`` student of the KD literature.

Parameter names follow mdistiller / RepDistiller ``models/cifar/mobilenetv2.py``:
``conv1.{0,1}``, ``blocks.{stage}.{i}.conv.{0..7}``, ``conv2.{0,1}``, ``classifier.0``.
Unlike torchvision, every inverted residual keeps its 1x1 expansion conv (also for t = 1).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ekd_plugins.models._common import ModelOutput, check_in_channels, global_pool, with_features

# (expansion t, output channels c, repeats n, first stride s); t = None means "the model's T".
_SETTING: list[tuple[int | None, int, int, int]] = [
    (1, 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
]


def _conv_bn_relu(inp: int, oup: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(oup), nn.ReLU()
    )


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise, 1x1 linear projection; residual when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(nn.Module):
    """MobileNetV2 with a stride-2 stem: 32x32 inputs end at 2x2 before the global pool."""

    def __init__(
        self, num_classes: int = 100, in_channels: int = 3, width_mult: float = 0.5, expand_ratio: int = 6
    ) -> None:
        super().__init__()
        channels = int(32 * width_mult)
        self.conv1 = _conv_bn_relu(check_in_channels(in_channels), channels, 3, 2)
        self.blocks = nn.ModuleList()
        for t, c, n, s in _SETTING:
            out_channels = int(c * width_mult)
            stage = []
            for stride in [s] + [1] * (n - 1):
                stage.append(
                    InvertedResidual(channels, out_channels, stride, expand_ratio if t is None else t)
                )
                channels = out_channels
            self.blocks.append(nn.Sequential(*stage))
        self.last_channel = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = _conv_bn_relu(channels, self.last_channel, 1, 1)
        self.classifier = nn.Sequential(nn.Linear(self.last_channel, num_classes))
        self.stage_channels = [int(c * width_mult) for c in (32, 24, 32, 96, 320)]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> ModelOutput:
        if return_features:
            return self._forward_features(x)
        x = self.conv1(x)
        for stage in self.blocks:
            x = stage(x)
        return self.classifier(global_pool(self.conv2(x)))

    def _forward_features(self, x: torch.Tensor) -> ModelOutput:
        # mdistiller's stage features: after the stem and after stages 1, 2, 4 and 6 (no preact).
        f0 = self.conv1(x)
        f1 = self.blocks[1](self.blocks[0](f0))
        f2 = self.blocks[2](f1)
        f3 = self.blocks[4](self.blocks[3](f2))
        f4 = self.blocks[6](self.blocks[5](f3))
        pooled = global_pool(self.conv2(f4))
        return with_features(self.classifier(pooled), [f0, f1, f2, f3, f4], [], pooled)

    def get_bn_before_relu(self) -> list[nn.BatchNorm2d]:
        """The last batch norm of the last block of stages 1, 2, 4 and 6 (mdistiller's choice)."""
        return [self.blocks[i][-1].conv[-1] for i in (1, 2, 4, 6)]

    def get_stage_channels(self) -> list[int]:
        """The channels of ``feats``."""
        return list(self.stage_channels)


def mobilenetv2(
    num_classes: int = 100, in_channels: int = 3, width_mult: float = 0.5, expand_ratio: int = 6
) -> MobileNetV2:
    """MobileNetV2; the defaults (T = 6, width 0.5) are mdistiller's ``mobile_half``."""
    return MobileNetV2(num_classes, in_channels, width_mult, expand_ratio)

"""``tiny_cnn``: a few-thousand-parameter CNN for tests, demos and smoke runs (any input size >= 2x2)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ekd_plugins.models._common import ModelOutput, check_in_channels, global_pool, with_features


class TinyCNN(nn.Module):
    """conv-BN-ReLU, strided conv-BN-ReLU, global average pool, linear."""

    def __init__(self, num_classes: int = 100, in_channels: int = 3, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(check_in_channels(in_channels), width, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> ModelOutput:
        f1 = F.relu(self.bn1(self.conv1(x)))
        pre2 = self.bn2(self.conv2(f1))
        f2 = F.relu(pre2)
        pooled = global_pool(f2)
        logits = self.fc(pooled)
        if return_features:  # the zoo's conventions: preact_feats[0] is feats[0]
            return with_features(logits, [f1, f2], [f1, pre2], pooled)
        return logits

    def get_bn_before_relu(self) -> list[nn.BatchNorm2d]:
        """The batch norm before the last ReLU of the second stage."""
        return [self.bn2]

    def get_stage_channels(self) -> list[int]:
        """The channels of ``feats``."""
        return [self.bn1.num_features, self.bn2.num_features]


def tiny_cnn(num_classes: int = 100, in_channels: int = 3, width: int = 8) -> TinyCNN:
    return TinyCNN(num_classes, in_channels, width)

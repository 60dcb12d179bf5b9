"""``tiny_cnn``: a few-thousand-parameter CNN for tests, demos and smoke runs (any input size >= 2x2)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ekd_plugins.models._common import ModelOutput, check_in_channels, global_pool, package


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
        f2 = F.relu(self.bn2(self.conv2(f1)))
        pooled = global_pool(f2)
        return package(self.fc(pooled), [f1, f2], pooled, return_features)


def tiny_cnn(num_classes: int = 100, in_channels: int = 3, width: int = 8) -> TinyCNN:
    return TinyCNN(num_classes, in_channels, width)

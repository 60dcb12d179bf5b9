"""ImageNet models: torchvision ResNet18/34/50 and MobileNetV2, and the MobileNetV1 of the R50->MV1 pair.

The torchvision models subclass torchvision's own classes, so their parameter
names are torchvision's and torchvision checkpoints import unchanged; they are
always built with random weights (nothing is downloaded).  MobileNetV1 follows
mdistiller's ``models/imagenet/mobilenetv1.py`` names (``model.{0..13}.*``, ``fc``).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torch.nn import functional as F
from torchvision.models import resnet as tv_resnet

from ekd_plugins.models._common import ModelOutput, check_in_channels, global_pool, with_features


class ImageNetResNet(torchvision.models.ResNet):
    """torchvision's ResNet with the zoo's forward contract and a configurable input width."""

    def __init__(
        self,
        block: type[tv_resnet.BasicBlock] | type[tv_resnet.Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__(block, layers, num_classes=num_classes, zero_init_residual=zero_init_residual)
        if check_in_channels(in_channels) != 3:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor, return_features: bool = False) -> ModelOutput:
        if return_features:
            return self._forward_features(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(global_pool(x))

    def _forward_features(self, x: torch.Tensor) -> ModelOutput:
        # mdistiller's positions: the stem before the max pool, each stage before its last ReLU.
        # (mdistiller's in-place ReLU makes its preact_feats[0] the stem after the ReLU, = feats[0].)
        f0 = self.relu(self.bn1(self.conv1(x)))
        pre1 = _stage_preact(self.layer1, self.maxpool(f0))
        pre2 = _stage_preact(self.layer2, F.relu(pre1))
        pre3 = _stage_preact(self.layer3, F.relu(pre2))
        pre4 = _stage_preact(self.layer4, F.relu(pre3))
        feats = [f0, F.relu(pre1), F.relu(pre2), F.relu(pre3), F.relu(pre4)]
        pooled = global_pool(feats[-1])
        return with_features(self.fc(pooled), feats, [f0, pre1, pre2, pre3, pre4], pooled)

    def get_bn_before_relu(self) -> list[nn.BatchNorm2d]:
        """The batch norm before the last ReLU of stages 2-4 (mdistiller leaves out stage 1)."""
        last = "bn3" if isinstance(self.layer1[0], tv_resnet.Bottleneck) else "bn2"
        return [getattr(stage[-1], last) for stage in (self.layer2, self.layer3, self.layer4)]

    def get_stage_channels(self) -> list[int]:
        """The channels of ``feats[1:]`` (mdistiller's values for ResNet50; it says the same
        256/512/1024/2048 for ResNet18/34, whose stages have 64/128/256/512)."""
        expansion = int(self.layer1[0].expansion)
        return [64 * expansion * 2**i for i in range(4)]


def _block_preact(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A torchvision residual block's output before its final ReLU."""
    identity = x if block.downsample is None else block.downsample(x)
    out = block.relu(block.bn1(block.conv1(x)))
    if isinstance(block, tv_resnet.Bottleneck):
        out = block.relu(block.bn2(block.conv2(out)))
        return block.bn3(block.conv3(out)) + identity
    return block.bn2(block.conv2(out)) + identity


def _stage_preact(stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """A stage's output before the last ReLU of its last block."""
    for block in stage[:-1]:
        x = block(x)
    return _block_preact(stage[-1], x)


class ImageNetMobileNetV2(torchvision.models.MobileNetV2):
    """torchvision's MobileNetV2 with the zoo's forward contract and a configurable input width."""

    # Indices in ``features`` after which the resolution drops next (stage outputs), and the last layer.
    STAGE_ENDS = (1, 3, 6, 13, 18)

    def __init__(
        self, num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0, dropout: float = 0.2
    ) -> None:
        super().__init__(num_classes=num_classes, width_mult=width_mult, dropout=dropout)
        if check_in_channels(in_channels) != 3:
            stem = self.features[0][0]
            self.features[0][0] = nn.Conv2d(
                in_channels, stem.out_channels, kernel_size=3, stride=2, padding=1, bias=False
            )
            nn.init.kaiming_normal_(self.features[0][0].weight, mode="fan_out")

    def forward(self, x: torch.Tensor, return_features: bool = False) -> ModelOutput:
        if not return_features:
            return self.classifier(global_pool(self.features(x)))
        feats = []
        out = x
        for index, layer in enumerate(self.features):
            out = layer(out)
            if index in self.STAGE_ENDS:
                feats.append(out)
        pooled = global_pool(out)
        return with_features(self.classifier(pooled), feats, [], pooled)

    def get_stage_channels(self) -> list[int]:
        """The channels of ``feats``."""
        return [int(self.features[index].out_channels) for index in self.STAGE_ENDS]


def _conv_bn(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup), nn.ReLU())


def _conv_dw(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.ReLU(),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(),
    )


# (output channels, stride) of the 13 depthwise-separable layers after the stem.
_MV1_LAYERS = (
    [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
)


class MobileNetV1(nn.Module):
    """MobileNetV1 (width 1.0) as used for the ResNet50 -> MobileNetV1 pair of CRD / DKD."""

    STAGE_ENDS = (3, 5, 11, 13)  # indices in ``model`` whose outputs are the stage features

    def __init__(self, num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(check_in_channels(in_channels), 32, 2)]
        channels = 32
        for width, stride in _MV1_LAYERS:
            layers.append(_conv_dw(channels, width, stride))
            channels = width
        layers.append(nn.AdaptiveAvgPool2d(1))  # index 14: the reference's AvgPool2d(7) at 224x224
        self.model = nn.Sequential(*layers)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> ModelOutput:
        if return_features:
            return self._forward_features(x)
        return self.fc(torch.flatten(self.model(x), 1))

    def _forward_features(self, x: torch.Tensor) -> ModelOutput:
        feats, preacts = [], []
        out = x
        for index, layer in enumerate(self.model[:14]):
            if index in self.STAGE_ENDS:  # mdistiller: the stage's BN output, then its ReLU
                preacts.append(layer[:-1](out))
                out = F.relu(preacts[-1])
                feats.append(out)
            else:
                out = layer(out)
        pooled = global_pool(out)
        return with_features(self.fc(pooled), feats, preacts, pooled)

    def get_bn_before_relu(self) -> list[nn.BatchNorm2d]:
        """The last batch norm of each stage-ending layer."""
        return [self.model[index][-2] for index in self.STAGE_ENDS]

    def get_stage_channels(self) -> list[int]:
        """The channels of ``feats``."""
        return [int(self.model[index][-2].num_features) for index in self.STAGE_ENDS]


def resnet18(
    num_classes: int = 1000, in_channels: int = 3, zero_init_residual: bool = False
) -> ImageNetResNet:
    return ImageNetResNet(tv_resnet.BasicBlock, [2, 2, 2, 2], num_classes, in_channels, zero_init_residual)


def resnet34(
    num_classes: int = 1000, in_channels: int = 3, zero_init_residual: bool = False
) -> ImageNetResNet:
    return ImageNetResNet(tv_resnet.BasicBlock, [3, 4, 6, 3], num_classes, in_channels, zero_init_residual)


def resnet50(
    num_classes: int = 1000, in_channels: int = 3, zero_init_residual: bool = False
) -> ImageNetResNet:
    return ImageNetResNet(tv_resnet.Bottleneck, [3, 4, 6, 3], num_classes, in_channels, zero_init_residual)


def mobilenet_v2(
    num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0, dropout: float = 0.2
) -> ImageNetMobileNetV2:
    return ImageNetMobileNetV2(num_classes, in_channels, width_mult, dropout)


def mobilenetv1(num_classes: int = 1000, in_channels: int = 3) -> MobileNetV1:
    return MobileNetV1(num_classes, in_channels)

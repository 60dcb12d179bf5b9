"""Shared pieces of the model zoo: the forward contract and small building blocks."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

# forward(x) -> logits; forward(x, return_features=True) -> (logits, {"feats": [...],
# "preact_feats": [...], "pooled_feat": ...}) at mdistiller's positions (ekdcli.sdk.contracts).
ModelOutput = torch.Tensor | tuple[torch.Tensor, dict[str, Any]]


def with_features(
    logits: torch.Tensor,
    feats: list[torch.Tensor],
    preact_feats: list[torch.Tensor],
    pooled_feat: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The ``return_features=True`` answer; a kind a model does not provide is an empty list."""
    return logits, {"feats": feats, "preact_feats": preact_feats, "pooled_feat": pooled_feat}


def run_stage(stage: nn.Sequential, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a stage and return ``(output, preact)``: the last block's output before its last ReLU.

    The last block must have ``forward_preact(x) -> (out, preact)`` (mdistiller's ``is_last``).
    """
    for block in stage[:-1]:
        x = block(x)
    out, preact = cast(Any, stage[-1]).forward_preact(x)
    return out, preact


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling to ``[N, C]``.

    The reference code uses fixed windows (``AvgPool2d(8)`` etc.) that equal a
    global pool at 32x32; the adaptive form gives the same numbers there and
    also works at other input sizes.
    """
    return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


def check_in_channels(in_channels: int) -> int:
    """Reject nonsense channel counts early with a readable error."""
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
    return in_channels


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: ``[N, g*c, H, W] -> [N, c*g, H, W]`` (works in any memory format)."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)

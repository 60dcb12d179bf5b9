"""The deterministic view of an in-memory split: normalized float images with labels and indices."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset as TorchDataset

from ekdcli.util.errors import UsageError


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``[..., C, H, W]`` -> float32 ``(x / 255 - mean) / std``, on the images' device."""
    channels = images.shape[-3]
    if len(mean) != channels or len(std) != channels:
        raise UsageError(
            f"the normalization has {len(mean)} mean and {len(std)} std values for {channels}-channel "
            "images; give one value per channel."
        )
    shape = (channels, 1, 1)
    m = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(shape)
    s = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(shape)
    return (images.to(torch.float32) / 255.0 - m) / s


class TensorSplit(TorchDataset):
    """One split of an in-memory dataset: yields ``(normalized float32 [C,H,W], int label, int index)``.

    No augmentation: this is the deterministic view used for scoring and evaluation.
    The index is the position in the split, the key of energy scores.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        if images.ndim != 4 or images.dtype != torch.uint8:
            raise UsageError(
                f"a TensorSplit needs uint8 images of shape [N, C, H, W], got {images.dtype} "
                f"{tuple(images.shape)}; convert them with ekdcli.sdk.data.from_arrays."
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise UsageError(
                f"a TensorSplit got {images.shape[0]} images but labels of shape {tuple(labels.shape)}; "
                "give one label per image."
            )
        self.images = images
        self.labels = labels
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        normalize(images[:0], self.mean, self.std)  # validates the channel count once

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        index = int(index)
        if index < 0:
            index += len(self)
        return normalize(self.images[index], self.mean, self.std), int(self.labels[index]), index

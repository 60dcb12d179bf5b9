"""CutMix and MixUp of selected batch rows, vectorized over the rows (no per-sample loop).

Random draws, all from the caller's generator and in this order: the partner
permutation of the whole batch, then lambda ~ Beta(alpha, alpha) per selected
row, then (CutMix) the box centres.  A row may be paired with itself when the
permutation has a fixed point (as in the reference CutMix); it is then
unchanged.
"""

from __future__ import annotations

import torch

from ekd_plugins.augmentations.sampling import sample_beta
from ekdcli.sdk.contracts import MixResult


def cutmix_boxes(
    lam: torch.Tensor, centre_y: torch.Tensor, centre_x: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row boxes ``[y1, y2) x [x1, x2)`` of CutMix (Yun et al. 2019), clipped to the image.

    The unclipped box has sides ``floor(H * sqrt(1 - lam))`` by ``floor(W * sqrt(1 - lam))``
    (area ``(1 - lam) * H * W`` up to rounding), extends half a side (floored) each way
    from the centre, and is then clipped to the image.
    """
    ratio = torch.sqrt((1.0 - lam.double()).clamp(0.0, 1.0))
    half_h = torch.floor(height * ratio).long() // 2
    half_w = torch.floor(width * ratio).long() // 2
    y1 = (centre_y - half_h).clamp(0, height)
    y2 = (centre_y + half_h).clamp(0, height)
    x1 = (centre_x - half_w).clamp(0, width)
    x2 = (centre_x + half_w).clamp(0, width)
    return y1, y2, x1, x2


def box_masks(
    y1: torch.Tensor, y2: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Boolean ``[M, H, W]``: true inside each row's box (coordinate grids against per-row bounds)."""
    ys = torch.arange(height, device=y1.device).view(1, height, 1)
    xs = torch.arange(width, device=x1.device).view(1, 1, width)
    inside_y = (ys >= y1.view(-1, 1, 1)) & (ys < y2.view(-1, 1, 1))
    inside_x = (xs >= x1.view(-1, 1, 1)) & (xs < x2.view(-1, 1, 1))
    return inside_y & inside_x


def _pairs(
    labels: torch.Tensor, mask: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selected rows (ascending) and their partners from a seeded permutation of the whole batch."""
    batch = labels.shape[0]
    if mask.shape != (batch,) or mask.dtype != torch.bool:
        raise ValueError(f"the selection mask must be a bool tensor of shape ({batch},), got {mask.shape}")
    perm = torch.randperm(batch, generator=generator, device=labels.device)
    rows = torch.nonzero(mask.to(labels.device), as_tuple=False).squeeze(1)
    return rows, perm[rows]


def cutmix(
    images: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, generator: torch.Generator, alpha: float
) -> MixResult:
    """CutMix of the rows where ``mask`` is true; ``lam`` is recomputed from the clipped box area."""
    rows, partners = _pairs(labels, mask, generator)
    m = rows.numel()
    _, _, height, width = images.shape
    device = images.device
    lam = sample_beta(alpha, alpha, m, generator, device)
    centre_y = torch.randint(0, height, (m,), generator=generator, device=device)
    centre_x = torch.randint(0, width, (m,), generator=generator, device=device)
    y1, y2, x1, x2 = cutmix_boxes(lam, centre_y, centre_x, height, width)
    inside = box_masks(y1, y2, x1, x2, height, width).unsqueeze(1)  # [M, 1, H, W], broadcast over C
    mixed = torch.where(inside, images[partners], images[rows])
    area = ((y2 - y1) * (x2 - x1)).double()
    effective = (1.0 - area / float(height * width)).float()
    return MixResult(
        images=mixed,
        labels_a=labels[rows],
        labels_b=labels[partners],
        lam=effective,
        rows=rows,
        partner_rows=partners,
    )


def mixup(
    images: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, generator: torch.Generator, alpha: float
) -> MixResult:
    """MixUp of the rows where ``mask`` is true: ``lam * x + (1 - lam) * x[partner]``, one lam per row."""
    if not images.is_floating_point():
        raise TypeError(f"MixUp blends pixel values and needs floating-point images, got {images.dtype}")
    rows, partners = _pairs(labels, mask, generator)
    lam = sample_beta(alpha, alpha, rows.numel(), generator, images.device)
    weight = lam.to(images.dtype).view(-1, 1, 1, 1)
    mixed = weight * images[rows] + (1 - weight) * images[partners]
    return MixResult(
        images=mixed,
        labels_a=labels[rows],
        labels_b=labels[partners],
        lam=lam,
        rows=rows,
        partner_rows=partners,
    )

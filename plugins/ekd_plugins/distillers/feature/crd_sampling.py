"""CRD's contrast indices, drawn on the device from a seeded generator, for a whole batch at once.

mdistiller's ``CIFAR100InstanceSample`` draws, per sample and with numpy, ``nce_k`` negatives
WITHOUT replacement (when there are enough) from the samples of the other classes; the positive
is the sample itself (``exact``) or a random sample of its class (``relax``).  Here the same
distributions come from one ``torch.rand`` per batch: every candidate gets a uniform key, the
sample's own class gets a key above 1, and the ``nce_k`` smallest keys are a uniform subset of
the other classes' samples.
"""

from __future__ import annotations

import torch

# Keys drawn at once: rows x train_size stays under this (ImageNet's 1.28M samples: 13 rows a chunk).
_KEYS_PER_CHUNK = 1 << 24


def negatives_available(labels: torch.Tensor) -> int:
    """How many negatives the sample of the largest class can draw from (the smallest pool)."""
    return int(labels.numel() - torch.bincount(labels).max().item())


def _negatives(
    sample_labels: torch.Tensor, rows_labels: torch.Tensor, k: int, generator: torch.Generator | None
) -> torch.Tensor:
    n = sample_labels.numel()
    per_chunk = max(1, _KEYS_PER_CHUNK // n)
    parts = []
    for start in range(0, rows_labels.numel(), per_chunk):
        labels = rows_labels[start : start + per_chunk]
        keys = torch.rand(labels.numel(), n, generator=generator, device=sample_labels.device)
        keys.masked_fill_(sample_labels.unsqueeze(0) == labels.unsqueeze(1), 2.0)
        parts.append(keys.topk(k, dim=1, largest=False).indices)
    return torch.cat(parts)


def _same_class(
    sample_labels: torch.Tensor, rows_labels: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """One uniformly drawn sample of each row's class (``relax`` positives)."""
    order = torch.argsort(sample_labels, stable=True)
    counts = torch.bincount(sample_labels)
    starts = torch.cumsum(counts, 0) - counts
    u = torch.rand(rows_labels.numel(), generator=generator, device=sample_labels.device, dtype=torch.float64)
    offset = torch.minimum((u * counts[rows_labels]).long(), counts[rows_labels] - 1)
    return order[starts[rows_labels] + offset]


def contrast_indices(
    sample_labels: torch.Tensor, index: torch.Tensor, k: int, mode: str, generator: torch.Generator | None
) -> torch.Tensor:
    """``[B, k + 1]`` memory rows: the positive in column 0, then ``k`` negatives of other classes."""
    rows_labels = sample_labels[index]
    negatives = _negatives(sample_labels, rows_labels, k, generator)
    positive = index if mode == "exact" else _same_class(sample_labels, rows_labels, generator)
    return torch.cat([positive.view(-1, 1).to(negatives.dtype), negatives], dim=1)

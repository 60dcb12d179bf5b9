"""Classification metrics of logits: accuracy, NLL, calibration, per-class and per-group accuracy.

Pure functions of ``logits [N, K]`` (any float dtype, any device) and integer ``labels [N]``.
Sums run in float64 so the numbers do not depend on the batch order or the logits' precision;
results come back as Python floats; accuracies and ECE are fractions in [0, 1] (docs/configuration.md#units).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ekdcli.util.errors import UsageError

if TYPE_CHECKING:
    import torch

ECE_BINS = 15
# Long-tailed groups by the number of TRAINING images of a class (the usual CIFAR-LT / ImageNet-LT cut).
MANY_SHOT_MIN = 101  # many-shot: more than 100
FEW_SHOT_MAX = 19  # few-shot: fewer than 20; medium-shot: 20..100 inclusive
LT_GROUPS = ("many", "medium", "few")


def _check(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated ``(float64 logits, int64 labels)`` on the logits' device."""
    import torch

    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] == 0:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise UsageError(f"metrics need non-empty [N, K] logits, got {shape}; pass the model's outputs.")
    y = torch.as_tensor(labels, device=logits.device).to(torch.int64).flatten()
    if y.numel() != logits.shape[0]:
        raise UsageError(
            f"got {logits.shape[0]} rows of logits but {y.numel()} labels; pass them from the same split."
        )
    k = logits.shape[1]
    if int(y.min()) < 0 or int(y.max()) >= k:
        raise UsageError(f"labels must lie in [0, {k}) for {k} classes, got {int(y.min())}..{int(y.max())}.")
    return logits.detach().double(), y


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Top-k accuracy (a fraction) for each k (k larger than the number of classes counts every class)."""
    z, y = _check(logits, labels)
    kmax = min(max(ks), z.shape[1])
    top = z.topk(kmax, dim=1).indices  # sorted, so the first k columns are the top k
    hits = top == y[:, None]
    n = y.numel()
    return {k: float(hits[:, : min(k, kmax)].any(dim=1).sum()) / n for k in ks}


def nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood (cross-entropy) of the true class, in nats."""
    import torch.nn.functional as F

    z, y = _check(logits, labels)
    return float(F.cross_entropy(z, y))


def calibration_bins(
    logits: torch.Tensor, labels: torch.Tensor, n_bins: int = ECE_BINS
) -> dict[str, torch.Tensor]:
    """Per-bin ``count``, ``accuracy`` and ``confidence`` (float64 CPU) of equal-width confidence bins.

    Bin ``b`` holds the samples whose top softmax probability lies in ``(b/n_bins, (b+1)/n_bins]``
    (Guo et al., 2017); empty bins have accuracy and confidence 0.
    """
    import torch

    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise UsageError(f"the number of calibration bins must be a positive integer, got {n_bins!r}.")
    z, y = _check(logits, labels)
    confidence, prediction = z.softmax(dim=1).max(dim=1)
    correct = (prediction == y).double()
    inner = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64, device=z.device)[1:-1]
    bins = torch.bucketize(confidence, inner, right=False)  # count of inner edges < confidence
    count = torch.bincount(bins, minlength=n_bins).double()
    acc_sum = torch.bincount(bins, weights=correct, minlength=n_bins)
    conf_sum = torch.bincount(bins, weights=confidence, minlength=n_bins)
    safe = count.clamp(min=1.0)
    return {
        "count": count.cpu(),
        "accuracy": (acc_sum / safe).cpu(),
        "confidence": (conf_sum / safe).cpu(),
    }


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = ECE_BINS) -> float:
    """ECE = sum_b |B_b|/N * |acc_b - conf_b| over equal-width confidence bins (a fraction)."""
    bins = calibration_bins(logits, labels, n_bins)
    n = float(bins["count"].sum())
    return float((bins["count"] / n * (bins["accuracy"] - bins["confidence"]).abs()).sum())


def per_class_accuracy(
    logits: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None
) -> list[float | None]:
    """Top-1 accuracy (a fraction) of each class; ``None`` for a class with no samples."""
    import torch

    z, y = _check(logits, labels)
    k = num_classes if num_classes is not None else z.shape[1]
    correct = (z.argmax(dim=1) == y).double()
    count = torch.bincount(y, minlength=k).double()
    hits = torch.bincount(y, weights=correct, minlength=k)
    acc = (hits / count.clamp(min=1.0)).tolist()
    return [a if c > 0 else None for a, c in zip(acc, count.tolist(), strict=True)]


def long_tail_membership(class_counts: Sequence[int]) -> dict[str, list[int]]:
    """Classes of each long-tailed group by training count: many > 100, medium 20..100, few < 20."""
    counts = [int(c) for c in class_counts]
    if any(c < 0 for c in counts):
        raise UsageError("class counts must not be negative; check the dataset's info['class_counts'].")
    return {
        "many": [i for i, c in enumerate(counts) if c >= MANY_SHOT_MIN],
        "medium": [i for i, c in enumerate(counts) if FEW_SHOT_MAX < c < MANY_SHOT_MIN],
        "few": [i for i, c in enumerate(counts) if c <= FEW_SHOT_MAX],
    }


def long_tail_accuracy(
    logits: torch.Tensor, labels: torch.Tensor, class_counts: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """Accuracy (a fraction, over the evaluated samples) of the many/medium/few-shot classes.

    ``class_counts[c]`` is the number of TRAINING images of class ``c``. A group with no evaluated
    samples has accuracy ``None``.
    """
    import torch

    z, y = _check(logits, labels)
    if len(class_counts) != z.shape[1]:
        raise UsageError(
            f"got training counts for {len(class_counts)} classes but the logits have {z.shape[1]}; "
            "use the counts of the same dataset."
        )
    correct = z.argmax(dim=1) == y
    out: dict[str, dict[str, Any]] = {}
    for name, classes in long_tail_membership(class_counts).items():
        in_group = torch.zeros(z.shape[1], dtype=torch.bool, device=z.device)
        in_group[torch.as_tensor(classes, dtype=torch.int64, device=z.device)] = True
        rows = in_group[y]
        n = int(rows.sum())
        out[name] = {
            "classes": len(classes),
            "samples": n,
            "accuracy": float(correct[rows].sum()) / n if n else None,
        }
    return out


def index_group_accuracy(
    logits: torch.Tensor, labels: torch.Tensor, groups: Mapping[str, torch.Tensor]
) -> dict[str, dict[str, Any]]:
    """Accuracy (a fraction) on each group of sample indices (e.g. low / others / high energy sets)."""
    import torch

    z, y = _check(logits, labels)
    correct = z.argmax(dim=1) == y
    n = y.numel()
    out: dict[str, dict[str, Any]] = {}
    for name, index in groups.items():
        rows = torch.as_tensor(index, device=z.device).to(torch.int64).flatten()
        if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= n):
            raise UsageError(
                f"group {name!r} holds sample indices outside 0..{n - 1}; build it from the same split."
            )
        count = int(rows.numel())
        out[name] = {
            "count": count,
            "accuracy": float(correct[rows].sum()) / count if count else None,
        }
    return out


def classification_metrics(
    logits: torch.Tensor, labels: torch.Tensor, n_bins: int = ECE_BINS
) -> dict[str, Any]:
    """Top-1, top-5, NLL, ECE and per-class accuracy in one dictionary (JSON-ready)."""
    top = topk_accuracy(logits, labels, (1, 5))
    return {
        "n": int(logits.shape[0]),
        "top1": top[1],
        "top5": top[5],
        "nll": nll(logits, labels),
        "ece": expected_calibration_error(logits, labels, n_bins),
        "per_class_accuracy": per_class_accuracy(logits, labels),
    }

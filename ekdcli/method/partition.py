"""Low / others / high energy sets (or equal-count energy segments) of a training set.

The sets follow :func:`ekdcli.sdk.energy.compute_thresholds` (the released code's
indexing) and ``Thresholds.is_low``/``is_high``: with distinct energies and the
``released`` rule, ``floor(N*low_rate)`` samples are low and
``floor(N*high_rate)`` are high; the ``paper`` rule (``E <= E_low``) adds the
sample at the low threshold.  Index tensors are int64, ascending, on the CPU.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.sdk.energy import MAX_SEGMENTS, Thresholds, compute_thresholds, segment_edges, segment_of
from ekdcli.sdk.options import both_sides_rate, partition_rates
from ekdcli.util.errors import UsageError

if TYPE_CHECKING:
    import torch

PARTITION_FORMAT = "ekd-partition"
PARTITION_FORMAT_VERSION = 1
GROUPS = ("low", "others", "high")
LOW_RULES = ("released", "paper")


@dataclass
class Partition:
    """Disjoint ``low``/``others``/``high`` sample indices covering ``range(n)``.

    For a segmentation, ``segments`` holds each sample's segment (0 = lowest
    energy), ``low``/``high`` are the first/last segment and ``thresholds`` is None.
    """

    low: torch.Tensor
    high: torch.Tensor
    others: torch.Tensor
    thresholds: Thresholds | None
    segments: torch.Tensor | None
    segment_edges: torch.Tensor | None
    score_fingerprint: str
    n: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_segments(self) -> int | None:
        return None if self.segment_edges is None else int(self.segment_edges.numel()) + 1

    def group(self, name: str) -> torch.Tensor:
        if name not in GROUPS:
            raise UsageError(f"unknown energy group {name!r}; use one of {', '.join(GROUPS)}.")
        return getattr(self, name)

    def mask(self, name: str) -> torch.Tensor:
        """Boolean ``[n]`` mask of a group (for figures and per-group metrics)."""
        import torch

        out = torch.zeros(self.n, dtype=torch.bool)
        out[self.group(name)] = True
        return out


def _check_energies(energies: torch.Tensor) -> torch.Tensor:
    import torch

    if not isinstance(energies, torch.Tensor) or energies.dim() != 1 or energies.numel() == 0:
        raise UsageError(
            "energies must be a non-empty 1-D tensor; load them from a score file made by `ekd score`."
        )
    bad = int((~torch.isfinite(energies)).sum())
    if bad:
        raise UsageError(
            f"{bad} energies are not finite; re-score with a teacher whose logits are finite (--force)."
        )
    return energies.detach().float()


def smallest_rate(n: int) -> float:
    """The smallest short decimal ``r`` with ``floor(n*r) >= 1`` (so a set is not empty)."""
    decimals = max(2, math.ceil(math.log10(n)) + 1)
    step = 10.0**-decimals
    rate = round(math.ceil(10**decimals / n) * step, decimals)
    while math.floor(n * rate) < 1:  # float rounding of n*rate just below 1
        rate = round(rate + step, decimals)
    return rate


def _check_rate(name: str, rate: float, n: int) -> None:
    if n < 2:
        raise UsageError(f"a partition needs at least 2 scored samples, got {n}; score a larger split.")
    if math.floor(n * rate) < 1:
        raise UsageError(
            f"the {name} {rate:g} is too small for {n} samples (the set would be empty); "
            f"use at least {smallest_rate(n):g}."
        )


def make_partition(
    energies: torch.Tensor,
    low_rate: float,
    high_rate: float,
    low_rule: str = "released",
    score_fingerprint: str = "",
) -> Partition:
    """Split samples into low / others / high energy by the rates' thresholds."""
    import torch

    e = _check_energies(energies)
    n = e.numel()
    if low_rule not in LOW_RULES:
        raise UsageError(
            f"unknown low-energy rule {low_rule!r}; use 'released' (E < E_low) or 'paper' (E <= E_low)."
        )
    # One rate for both sides (--rate r: the r lowest and the r highest) is in (0, 0.5]; two rates
    # follow the partition rule of every consumer (sdk/options.py).
    if low_rate == high_rate:
        both_sides_rate("", "rate", low_rate)
    low_rate, high_rate = partition_rates("", low_rate, high_rate, ("low rate", "high rate"))
    _check_rate("low rate", low_rate, n)
    _check_rate("high rate", high_rate, n)
    thresholds = compute_thresholds(e, low_rate, high_rate, low_rule=low_rule)  # type: ignore[arg-type]
    is_low, is_high = thresholds.is_low(e), thresholds.is_high(e)
    if bool((is_low & is_high).any()):
        raise UsageError(
            f"with the paper rule, low rate {low_rate:g} and high rate {high_rate:g} make the sets overlap; "
            "lower a rate so their sum is below 1, or use the released rule."
        )
    others = ~(is_low | is_high)
    return Partition(
        low=torch.nonzero(is_low).flatten().cpu(),
        high=torch.nonzero(is_high).flatten().cpu(),
        others=torch.nonzero(others).flatten().cpu(),
        thresholds=thresholds,
        segments=None,
        segment_edges=None,
        score_fingerprint=score_fingerprint,
        n=n,
    )


def check_segments(n_segments: int, n: int | None = None) -> None:
    """2 to MAX_SEGMENTS segments (the bound the energy distillers share), and no more than samples."""
    top = MAX_SEGMENTS if n is None else min(MAX_SEGMENTS, n)
    if isinstance(n_segments, bool) or not isinstance(n_segments, int) or not 2 <= n_segments <= top:
        bound = f"{top} (the samples)" if n is not None and n < MAX_SEGMENTS else str(top)
        raise UsageError(f"the number of segments must be an integer from 2 to {bound}, got {n_segments}.")


def make_segments(energies: torch.Tensor, n_segments: int, score_fingerprint: str = "") -> Partition:
    """Equal-count energy segments (Temperature Gradation, Table 4 right); low/high = first/last one."""
    import torch

    e = _check_energies(energies)
    n = e.numel()
    check_segments(n_segments, n)
    edges = segment_edges(e, n_segments)
    segments = segment_of(e, edges).cpu()
    return Partition(
        low=torch.nonzero(segments == 0).flatten(),
        high=torch.nonzero(segments == n_segments - 1).flatten(),
        others=torch.nonzero((segments > 0) & (segments < n_segments - 1)).flatten(),
        thresholds=None,
        segments=segments,
        segment_edges=edges.cpu(),
        score_fingerprint=score_fingerprint,
        n=n,
    )


# ------------------------------------------------------------------------- files
def save_partition(
    path: str | os.PathLike[str], partition: Partition, extra_meta: dict[str, Any] | None = None
) -> Path:
    """Write the index sets (and segments) as safetensors; thresholds and fingerprint in metadata."""
    from ekdcli.store.weights import save_tensors

    tensors = {name: partition.group(name) for name in GROUPS}
    if partition.segments is not None and partition.segment_edges is not None:
        tensors["segments"] = partition.segments
        tensors["segment_edges"] = partition.segment_edges
    metadata: dict[str, Any] = {
        "format": PARTITION_FORMAT,
        "format_version": PARTITION_FORMAT_VERSION,
        "n": partition.n,
        "score_fingerprint": partition.score_fingerprint,
        "extra": {**partition.extra, **(extra_meta or {})},
    }
    if partition.thresholds is not None:
        metadata["thresholds"] = partition.thresholds.as_dict()
    return save_tensors(path, tensors, metadata)


def load_partition(path: str | os.PathLike[str]) -> Partition:
    """Read a partition file written by :func:`save_partition`, checking that its sets cover ``range(n)``."""
    import torch

    from ekdcli.store.weights import load_tensors, meta_value

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no partition file at {file}; create it with `ekd partition --rate R`.")
    tensors, metadata = load_tensors(file)
    if metadata.get("format") != PARTITION_FORMAT or any(g not in tensors for g in GROUPS):
        raise UsageError(f"{file} is not an ekd partition file; pass a file written by `ekd partition`.")
    n = int(meta_value(metadata, "n", -1))
    groups = {g: tensors[g].to(torch.int64) for g in GROUPS}
    covered = torch.cat(list(groups.values()))
    if covered.numel() != n or not torch.equal(torch.sort(covered).values, torch.arange(n)):
        raise UsageError(
            f"{file} is a damaged partition file (its sets do not cover {n} samples); re-create it."
        )
    raw_thresholds = metadata.get("thresholds")
    thresholds = Thresholds(**json.loads(raw_thresholds)) if raw_thresholds else None
    return Partition(
        **groups,
        thresholds=thresholds,
        segments=tensors.get("segments"),
        segment_edges=tensors.get("segment_edges"),
        score_fingerprint=metadata.get("score_fingerprint", ""),
        n=n,
        extra=dict(meta_value(metadata, "extra", {}) or {}),
    )


# ------------------------------------------------------------------------ tables
def per_class_counts(
    partition: Partition, labels: torch.Tensor, num_classes: int | None = None
) -> dict[str, list[int]]:
    """Per-class sizes of each group (and ``total``): how a long-tailed set spreads over energies."""
    import torch

    y = torch.as_tensor(labels).to(torch.int64).flatten().cpu()
    if y.numel() != partition.n:
        raise UsageError(
            f"got {y.numel()} labels for a partition of {partition.n} samples; use the same split."
        )
    k = int(num_classes) if num_classes is not None else int(y.max()) + 1
    if int(y.min()) < 0 or int(y.max()) >= k:
        raise UsageError(f"labels must lie in [0, {k}); got {int(y.min())}..{int(y.max())}.")
    counts = {g: torch.bincount(y[partition.group(g)], minlength=k).tolist() for g in GROUPS}
    counts["total"] = torch.bincount(y, minlength=k).tolist()
    return counts


def format_partition(
    partition: Partition, labels: torch.Tensor | None = None, class_names: list[str] | None = None
) -> str:
    """Counts and thresholds (or segment edges); with ``labels``, a per-class table too."""
    import torch

    n = partition.n
    th = partition.thresholds
    lines = [f"samples {n}   score fingerprint {partition.score_fingerprint or '-'}", ""]
    rules = {"low": "", "others": "", "high": ""}
    if th is not None:
        rules["low"] = f"E {'<=' if th.low_rule == 'paper' else '<'} {th.low:.4f}  ({th.low_rule} rule)"
        rules["high"] = f"E > {th.high:.4f}"
    elif partition.segments is not None:
        rules["low"], rules["high"] = "first segment", "last segment"
    lines.append(f"{'group':<8}{'count':>9}{'share':>9}   rule")
    for g in GROUPS:
        count = partition.group(g).numel()
        lines.append(f"{g:<8}{count:>9}{count / n:>9.2%}   {rules[g]}".rstrip())
    if th is not None:
        expected_low, expected_high = math.floor(n * th.low_rate), math.floor(n * th.high_rate)
        if th.low_rule == "paper":
            expected_low += 1
        lines += [
            "",
            f"rates: low {th.low_rate:g}, high {th.high_rate:g}   "
            f"thresholds: E_low {th.low:.4f}, E_high {th.high:.4f}",
        ]
        if (partition.low.numel(), partition.high.numel()) != (expected_low, expected_high):
            lines.append(
                f"note: tied energies at a threshold; without ties the sets would hold {expected_low} low "
                f"and {expected_high} high samples."
            )
    if partition.segments is not None and partition.segment_edges is not None:
        sizes = torch.bincount(partition.segments, minlength=partition.n_segments or 0).tolist()
        edges = ", ".join(f"{v:.4f}" for v in partition.segment_edges.tolist())
        lines += ["", f"{partition.n_segments} segments, sizes {sizes}", f"edges {edges}"]
    if labels is not None:
        num_classes = len(class_names) if class_names else None
        counts = per_class_counts(partition, labels, num_classes)
        names = class_names or [str(c) for c in range(len(counts["total"]))]
        width = max(8, *(len(s) for s in names)) + 2
        lines += [
            "",
            f"{'class':<{width}}{'total':>7}{'low':>7}{'others':>8}{'high':>7}{'low%':>8}{'high%':>8}",
        ]
        for c, name in enumerate(names):
            total = counts["total"][c]
            low, others, high = counts["low"][c], counts["others"][c], counts["high"][c]
            low_pct = f"{low / total:.1%}" if total else "-"
            high_pct = f"{high / total:.1%}" if total else "-"
            lines.append(f"{name:<{width}}{total:>7}{low:>7}{others:>8}{high:>7}{low_pct:>8}{high_pct:>8}")
    return "\n".join(lines)

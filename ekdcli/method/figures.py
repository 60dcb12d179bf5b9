"""The paper's figures from score tables: energy histogram (Fig. 3a), certain/uncertain images
(Fig. 3) and average sorted teacher predictions of the low vs high energy sets (Fig. 4).

matplotlib (Agg) is imported inside each function so that importing this module stays cheap;
every PNG is written atomically.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.store.atomic import atomic_write
from ekdcli.util.errors import UsageError

if TYPE_CHECKING:
    import torch

    from ekdcli.sdk.energy import Thresholds

LOW_COLOR = "tab:blue"  # Fig. 4: low energy in blue, high energy in red
HIGH_COLOR = "tab:red"
# Fig. 3's grid in the histogram's colours (the paper's red/green boxes read the other way round):
# certain (low energy) framed blue, uncertain (high energy) red.
CERTAIN_FRAME = LOW_COLOR
UNCERTAIN_FRAME = HIGH_COLOR


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    plt = pyplot()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)


def _as_tensor(values: Any, name: str, dim: int) -> torch.Tensor:
    import torch

    t = torch.as_tensor(values).detach().cpu()
    if t.dim() != dim:
        raise UsageError(f"{name} must have {dim} dimension(s), got shape {tuple(t.shape)}.")
    return t


def _check_classes(classes: list[int], num_classes: int) -> list[int]:
    chosen = [int(c) for c in classes]
    if not chosen:
        raise UsageError("choose at least one class to draw.")
    bad = [c for c in chosen if not 0 <= c < num_classes]
    if bad:
        raise UsageError(f"classes {bad} are out of range; use class numbers from 0 to {num_classes - 1}.")
    return chosen


def pick_classes(labels: torch.Tensor, num: int = 4, seed: int = 0) -> list[int]:
    """``num`` distinct classes present in ``labels``, chosen reproducibly by ``seed`` (ascending)."""
    import torch

    present = torch.unique(torch.as_tensor(labels).to(torch.int64).cpu())
    if num < 1:
        raise UsageError(f"the number of classes to draw must be at least 1, got {num}.")
    generator = torch.Generator().manual_seed(seed)
    picked = present[torch.randperm(present.numel(), generator=generator)[:num]]
    return sorted(int(c) for c in picked)


# A histogram bin this many times the median non-empty bin flattens the others: log counts instead.
DOMINANT_BIN = 10.0


def dominated(counts: Any) -> bool:
    """Whether one bin of ``counts`` holds more than :data:`DOMINANT_BIN` times the median non-empty bin."""
    import statistics

    filled = [float(c) for c in counts if c > 0]
    return bool(filled) and max(filled) > DOMINANT_BIN * statistics.median(filled)


def energy_histogram(
    energies: torch.Tensor,
    thresholds: Thresholds | None,
    path: str | os.PathLike[str],
    title: str = "Teacher energy scores",
    bins: int = 60,
    log: bool | None = None,
) -> Path:
    """Histogram of the energies with ``E_low``/``E_high`` marked and the sets shaded (Fig. 3a).

    ``log``: counts on a log axis; None (default) decides by the data: log when one bin holds more
    than :data:`DOMINANT_BIN` times the median bin, which would flatten the rest (and the shading).
    """
    import torch

    e = _as_tensor(energies, "energies", 1).double()
    if e.numel() == 0:
        raise UsageError("there are no energies to draw; score a non-empty split first.")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    counts, _, _ = ax.hist(e.numpy(), bins=bins, color="0.6", edgecolor="0.3", linewidth=0.3)
    if log if log is not None else dominated(counts):
        ax.set_yscale("log")
    if thresholds is not None:
        lo_n = int(thresholds.is_low(e.float()).sum())
        hi_n = int(thresholds.is_high(e.float()).sum())
        lo_x, hi_x = float(e.min()), float(e.max())
        if math.isfinite(thresholds.low):
            ax.axvspan(lo_x, thresholds.low, color=LOW_COLOR, alpha=0.15)
            ax.axvline(
                thresholds.low, color=LOW_COLOR, linestyle="--", label=f"E_low {thresholds.low:.3f} ({lo_n})"
            )
        if math.isfinite(thresholds.high):
            ax.axvspan(thresholds.high, hi_x, color=HIGH_COLOR, alpha=0.15)
            ax.axvline(
                thresholds.high,
                color=HIGH_COLOR,
                linestyle="--",
                label=f"E_high {thresholds.high:.3f} ({hi_n})",
            )
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("energy  E(x) = -T_E logsumexp(z / T_E)")
    ax.set_ylabel("samples")
    ax.set_title(f"{title}  (N={e.numel()}, median {float(torch.median(e)):.3f})", fontsize=10)
    return save_figure(fig, path)


def certain_uncertain_picks(
    labels: torch.Tensor, energies: torch.Tensor, cls: int, per_class: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of class ``cls``'s ``per_class`` lowest-energy images (ascending energy) and of its
    ``per_class`` highest (descending).  A class with fewer than ``2 * per_class`` images is split in
    halves (the extra one, if odd, goes to the certain side), so no image is in both rows."""
    import torch

    members = torch.nonzero(labels == cls).flatten()
    order = members[torch.argsort(energies[members], stable=True)]
    half = (order.numel() + 1) // 2
    return order[: min(per_class, half)], order.flip(0)[: min(per_class, order.numel() - half)]


def certain_uncertain_grid(
    images_uint8: torch.Tensor,
    labels: torch.Tensor,
    energies: torch.Tensor,
    class_names: list[str],
    classes: list[int],
    per_class: int,
    path: str | os.PathLike[str],
) -> Path:
    """Per class: a row of its lowest-energy ("certain") and of its highest-energy ("uncertain") images."""
    import torch

    images = _as_tensor(images_uint8, "images", 4)
    y = _as_tensor(labels, "labels", 1).to(torch.int64)
    e = _as_tensor(energies, "energies", 1).float()
    if images.dtype != torch.uint8 or images.shape[1] not in (1, 3):
        raise UsageError(f"images must be uint8 [N, 1 or 3, H, W], got {images.dtype} {tuple(images.shape)}.")
    if not images.shape[0] == y.numel() == e.numel():
        raise UsageError(
            f"got {images.shape[0]} images, {y.numel()} labels and {e.numel()} energies; "
            "use one split throughout."
        )
    if per_class < 1:
        raise UsageError(f"images per class must be at least 1, got {per_class}.")
    chosen = _check_classes(classes, len(class_names))
    plt = pyplot()
    rows = 2 * len(chosen)
    fig, axes = plt.subplots(
        rows, per_class, figsize=(1.35 * per_class + 1.2, 1.55 * rows), squeeze=False, layout="constrained"
    )
    pixels = images.permute(0, 2, 3, 1)  # NHWC for imshow
    for r, c in enumerate(chosen):
        certain, uncertain = certain_uncertain_picks(y, e, c, per_class)
        picks = (("certain", certain, CERTAIN_FRAME), ("uncertain", uncertain, UNCERTAIN_FRAME))
        for half, (kind, idx, frame) in enumerate(picks):
            _image_row(axes[2 * r + half], pixels, e, idx, frame, f"{class_names[c]}\n{kind}")
    fig.suptitle("Lowest-energy (certain, blue) and highest-energy (uncertain, red) images", fontsize=9)
    return save_figure(fig, path)


def _image_row(
    row: Any, pixels: torch.Tensor, energies: torch.Tensor, idx: torch.Tensor, frame: str, label: str
) -> None:
    """One row of the grid: the images ``idx`` framed in ``frame`` with their energies."""
    for j, ax in enumerate(row):
        ax.set_xticks([])
        ax.set_yticks([])
        if j >= idx.numel():
            ax.axis("off")
            continue
        img = pixels[int(idx[j])].numpy()
        if img.shape[-1] == 1:
            ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(img)
        for spine in ax.spines.values():
            spine.set_edgecolor(frame)
            spine.set_linewidth(2.5)
        ax.set_title(f"E={float(energies[int(idx[j])]):.2f}", fontsize=7)
    row[0].set_ylabel(label, fontsize=8)
    if idx.numel() == 0:
        row[0].axis("on")
        row[0].set_frame_on(False)
        row[0].text(0.5, 0.5, "no images", ha="center", va="center", fontsize=7)


def _class_curves(ax: Any, ranked: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, title: str) -> None:
    """One panel of Fig. 4: the mean sorted probabilities of a class's low and high energy samples."""
    import torch

    x = torch.arange(1, ranked.shape[1] + 1).numpy()
    for mask, name, color in ((lo, "low energy", LOW_COLOR), (hi, "high energy", HIGH_COLOR)):
        rows = ranked[mask]
        if rows.shape[0]:
            label = f"{name} ({rows.shape[0]})"
            ax.plot(x, rows.mean(0).numpy(), marker="o", markersize=3, color=color, label=label)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("rank of probability", fontsize=8)
    ax.set_xticks(x)
    ax.set_ylim(0, 1)
    if ax.lines:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no samples", ha="center", transform=ax.transAxes)


def average_prediction_plot(
    probs: torch.Tensor,
    labels: torch.Tensor,
    low_mask: torch.Tensor,
    high_mask: torch.Tensor,
    classes: list[int],
    path: str | os.PathLike[str],
    top: int = 10,
    class_names: list[str] | None = None,
) -> Path:
    """Per class, the mean of the descending-sorted teacher probabilities of its low vs high energy samples.

    Low-energy samples give a peaked curve (little dark knowledge), high-energy a flat one (Fig. 4).
    """
    import torch

    p = _as_tensor(probs, "probabilities", 2).float()
    y = _as_tensor(labels, "labels", 1).to(torch.int64)
    lo = _as_tensor(low_mask, "low mask", 1).bool()
    hi = _as_tensor(high_mask, "high mask", 1).bool()
    if not p.shape[0] == y.numel() == lo.numel() == hi.numel():
        raise UsageError(
            "probabilities, labels and masks must describe the same samples; use one split throughout."
        )
    num_classes = p.shape[1]
    chosen = _check_classes(classes, num_classes)
    k = max(1, min(int(top), num_classes))
    ranked = torch.sort(p, dim=1, descending=True).values[:, :k]
    plt = pyplot()
    cols = min(4, len(chosen))
    nrows = math.ceil(len(chosen) / cols)
    fig, axes = plt.subplots(
        nrows, cols, figsize=(3.2 * cols, 2.6 * nrows), squeeze=False, sharey=True, layout="constrained"
    )
    for i, c in enumerate(chosen):
        title = class_names[c] if class_names and c < len(class_names) else f"class {c}"
        _class_curves(axes[i // cols][i % cols], ranked[y == c], lo[y == c], hi[y == c], title)
    for j in range(len(chosen), nrows * cols):
        axes[j // cols][j % cols].axis("off")
    axes[0][0].set_ylabel("mean sorted probability", fontsize=8)
    fig.suptitle(f"Average teacher prediction (top {k}, sorted) of low vs high energy samples", fontsize=9)
    return save_figure(fig, path)


def training_curves(runs: list[tuple[str, list[dict[str, Any]]]], path: str | os.PathLike[str]) -> Path:
    """Loss, train/test top-1 (percent) and learning rate per epoch of one or more runs, one colour
    per run: ``runs`` are ``(label, metrics.jsonl records)`` with accuracies as fractions."""
    if not any(records for _, records in runs):
        raise UsageError("no epoch has finished in these runs yet; draw their curves after the first epoch.")
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    # the training objective and the test cross-entropy are different quantities: one panel each;
    # the test loss on a log axis, so its first epochs (often 10x the rest) do not flatten the curve
    fig, (loss_ax, test_ax, top1_ax, lr_ax) = plt.subplots(1, 4, figsize=(16, 3.8), layout="constrained")
    for number, (label, records) in enumerate(runs):
        color = f"C{number % 10}"
        _curve(loss_ax, records, "loss", 1.0, color, "-", label)
        _curve(test_ax, records, "test_loss", 1.0, color, "-", None)
        for key, style in (("test_top1", "-"), ("train_top1", ":")):
            _curve(top1_ax, records, key, 100.0, color, style, None)
        _curve(lr_ax, records, "lr", 1.0, color, "-", None)
    test_ax.set_yscale("log")
    for ax, title, unit in (
        (loss_ax, "training objective", "loss"),
        (test_ax, "test cross-entropy (log axis)", "test CE"),
        (top1_ax, "top-1 (test solid, train dotted)", "top-1 (%)"),
        (lr_ax, "learning rate", "lr"),
    ):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(unit)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if len(runs) == 1:
        fig.suptitle(runs[0][0], fontsize=10)
    else:  # one entry per run (its colour) under the panels
        fig.legend(loc="outside lower center", ncols=min(len(runs), 3), fontsize=8, frameon=False)
    return save_figure(fig, path)


def _curve(
    ax: Any, records: list[dict[str, Any]], key: str, scale: float, color: str, style: str, label: str | None
) -> None:
    """One line: ``key`` of each record that has a finite value, against its epoch."""
    points = [
        (r["epoch"], scale * r[key])
        for r in records
        if isinstance(r.get(key), (int, float)) and math.isfinite(r[key]) and "epoch" in r
    ]
    if points:
        xs, ys = zip(*points, strict=True)
        ax.plot(
            xs,
            ys,
            linestyle=style,
            color=color,
            marker="o" if len(points) < 30 else None,
            markersize=3,
            label=label,
        )

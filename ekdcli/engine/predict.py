"""Inference over a whole split: logits in index order, and accuracy / loss summaries.

Each rank of a process group handles a contiguous shard; results are gathered (logits) or
summed (metrics) so every rank ends with the same answer as a single process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from ekdcli.engine import ddp
from ekdcli.engine.objective import model_logits
from ekdcli.engine.pipeline import DeviceBatches, LoaderBatches, make_batches
from ekdcli.engine.progress import PassProgress, resolve_mode
from ekdcli.engine.runtime import Runtime
from ekdcli.sdk.contracts import FolderDataset, InMemoryDataset


class _EvalMode:
    """Eval mode and the model on the device for a block; the training flag is restored after."""

    def __init__(self, model: torch.nn.Module, runtime: Runtime) -> None:
        self.model = ddp.unwrap(model)
        self.runtime = runtime

    def __enter__(self) -> torch.nn.Module:
        self.was_training = self.model.training
        first = next(self.model.parameters(), None)
        if first is not None and first.device != self.runtime.device:
            self.runtime.prepare_model(self.model)
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def pass_progress(runtime: Runtime, desc: str | None, total: int, unit: str = "img") -> PassProgress:
    """A progress display for one pass (rank 0, not quiet; none without ``desc``)."""
    options = runtime.options
    mode = resolve_mode(options.progress, options.quiet, runtime.is_main) if desc else "none"
    return PassProgress(desc or "", total, mode, unit=unit)


def iter_logits(
    model: torch.nn.Module,
    batches: DeviceBatches | LoaderBatches,
    runtime: Runtime,
    desc: str | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(float32 logits, labels)`` per batch of this rank's shard, on the device; ``desc`` names
    the pass in a progress display (a bar on a terminal, lines with an ETA otherwise)."""
    with (
        _EvalMode(model, runtime) as plain,
        torch.no_grad(),
        pass_progress(runtime, desc, batches.shard_size) as progress,
    ):
        for batch in batches.epoch():
            with runtime.autocast():
                logits = model_logits(plain(batch.images))
            progress.update(int(batch.labels.shape[0]))
            yield logits.float(), batch.labels


def predict(
    model: torch.nn.Module,
    dataset: InMemoryDataset | FolderDataset,
    split: str = "train",
    runtime: Runtime | None = None,
    batch_size: int = 256,
    limit: int | None = None,
    desc: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, CPU, ``[N, K]``) and labels (``[N]``) of a split in index order
    (the first ``limit`` samples when given).

    Eval mode, no augmentation, no gradients, the runtime's autocast.  Under DDP every rank
    returns the full result.  ``desc`` shows progress under that name.
    """
    runtime = runtime or Runtime()
    batches = make_batches(dataset, split, runtime, batch_size, train=False, limit=limit)
    return predict_batches(model, batches, runtime, desc)


def predict_batches(
    model: torch.nn.Module,
    batches: DeviceBatches | LoaderBatches,
    runtime: Runtime,
    desc: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`predict` over prepared (non-training) batches, e.g. ones kept across epochs."""
    logits_parts, label_parts = [], []
    for logits, labels in iter_logits(model, batches, runtime, desc):
        logits_parts.append(logits)
        label_parts.append(labels)
    width = logits_parts[0].shape[1] if logits_parts else 0
    if ddp.is_dist():  # a rank whose shard is empty (more ranks than samples) still needs the width
        width = int(ddp.all_reduce_max(torch.tensor([width], device=runtime.device)).item())
    if logits_parts:
        logits, labels = torch.cat(logits_parts), torch.cat(label_parts)
    else:
        logits = torch.empty((0, width), device=runtime.device)
        labels = torch.empty((0,), dtype=torch.long, device=runtime.device)
    sizes = batches.shard_sizes()
    logits = ddp.all_gather_cat(logits, sizes)
    labels = ddp.all_gather_cat(labels, sizes)
    return logits.cpu(), labels.cpu()


def evaluate_batches(
    model: torch.nn.Module,
    batches: DeviceBatches | LoaderBatches,
    runtime: Runtime,
    desc: str | None = None,
) -> dict[str, Any]:
    """Top-1 / top-5 accuracy (fractions) and mean cross-entropy over prepared batches."""
    sums = torch.zeros(4, dtype=torch.float64, device=runtime.device)  # correct1, correct5, loss, n
    for logits, labels in iter_logits(model, batches, runtime, desc):
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top == labels[:, None]
        sums += torch.stack(
            [
                hits[:, 0].sum().double(),
                hits.any(dim=1).sum().double(),
                F.cross_entropy(logits, labels, reduction="sum").double(),
                torch.tensor(float(labels.shape[0]), dtype=torch.float64, device=runtime.device),
            ]
        )
    ddp.all_reduce_sum(sums)
    correct1, correct5, loss, n = sums.tolist()
    denom = max(n, 1.0)
    return {
        "top1": correct1 / denom,
        "top5": correct5 / denom,
        "loss": loss / denom,
        "n": int(n),
    }


def evaluate_model(
    model: torch.nn.Module,
    dataset: InMemoryDataset | FolderDataset,
    split: str = "test",
    runtime: Runtime | None = None,
    limit: int | None = None,
    batch_size: int = 256,
    desc: str | None = None,
) -> dict[str, Any]:
    """``{"top1", "top5", "loss", "n"}`` of ``model`` on a split (accuracies as fractions)."""
    runtime = runtime or Runtime()
    batches = make_batches(dataset, split, runtime, batch_size, train=False, limit=limit)
    return evaluate_batches(model, batches, runtime, desc)

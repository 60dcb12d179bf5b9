"""Batches for the training loop and for inference.

In-memory datasets (CIFAR, digits) live on the device as one uint8 tensor; each batch is one
gather that crops (zero padding), flips and lays out channels-last at once, then a fused
normalize.  Folder datasets (ImageNet) go through DataLoader workers.  Both yield :class:`Batch`.

Randomness: every epoch draws a permutation plus one crop offset pair and one flip per
permutation position from a CPU ``torch.Generator`` (cheap to checkpoint, identical on all
ranks); each rank then takes a disjoint strided shard of the permutation.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ekdcli.sdk.contracts import FolderDataset, InMemoryDataset
from ekdcli.util.errors import UsageError

if TYPE_CHECKING:
    from ekdcli.engine.runtime import Runtime


@dataclass
class RowSource:
    """Where a training batch's rows come from, so that more views of them can be drawn
    (:func:`ekdcli.engine.strong.strong_view`).

    ``images_uint8`` is the whole in-memory split on the device; ``index`` the batch's rows in it;
    ``scale``/``shift`` normalize as the batch's images were.
    """

    images_uint8: torch.Tensor
    index: torch.Tensor
    padding: int
    hflip: bool
    scale: torch.Tensor
    shift: torch.Tensor
    channels_last: bool


@dataclass
class Batch:
    """One batch on the device: normalized float images, labels, and sample indices in the split.

    ``views`` (training batches of in-memory sets only, else None) names the augmented view of each
    row: ``view_code(dy, dx, flip, padding)``, so a sample's crop/flip can key a teacher cache.
    ``source`` (the same batches only) lets an objective draw another view of the rows.
    """

    images: torch.Tensor  # float32 [B, C, H, W]
    labels: torch.Tensor  # int64 [B]
    indices: torch.Tensor  # int64 [B]
    views: torch.Tensor | None = None  # int64 [B]
    source: RowSource | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def view_count(padding: int) -> int:
    """Distinct crop/flip views of one image: ``(2p + 1)^2`` crop offsets times 2 flips (162 at p = 4)."""
    return (2 * padding + 1) ** 2 * 2


def view_code(
    offsets_y: torch.Tensor, offsets_x: torch.Tensor, flips: torch.Tensor, padding: int
) -> torch.Tensor:
    """``(dy * (2p + 1) + dx) * 2 + flip``: one int64 per row, in ``[0, view_count(p))``."""
    side = 2 * padding + 1
    return (offsets_y.long() * side + offsets_x.long()) * 2 + flips.long()


def decode_view(views: torch.Tensor, padding: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`view_code`: ``(offsets_y, offsets_x, flips)``."""
    side = 2 * padding + 1
    crop, flips = views.div(2, rounding_mode="floor"), views.remainder(2).bool()
    return crop.div(side, rounding_mode="floor"), crop.remainder(side), flips


def crop_flip(
    images_uint8: torch.Tensor,
    offsets_y: torch.Tensor,
    offsets_x: torch.Tensor,
    flips: torch.Tensor,
    padding: int,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Random-crop-with-zero-padding and horizontal flip of a batch, as one gather.

    Equivalent to torchvision's ``RandomCrop(H, padding)`` then ``RandomHorizontalFlip`` per
    sample: sample ``i`` is zero-padded by ``padding`` on each side, the ``H x W`` window whose top
    left corner is ``(offsets_y[i], offsets_x[i])`` (each in ``[0, 2 * padding]``) is cut out, and
    it is mirrored left-right where ``flips[i]``.  With ``index`` given, ``images_uint8`` is a whole
    set and row ``i`` of the result comes from ``images_uint8[index[i]]`` (saves a second gather).
    Returns uint8 ``[B, C, H, W]`` with channels-last strides.
    """
    _, _, height, width = images_uint8.shape
    device = images_uint8.device
    rows_out = offsets_y.shape[0]
    sample = index if index is not None else torch.arange(rows_out, device=device)
    ar_h = torch.arange(height, device=device)
    ar_w = torch.arange(width, device=device)
    rows = offsets_y.to(device).long()[:, None] - padding + ar_h  # [B, H] source rows
    left = offsets_x.to(device).long()[:, None] - padding
    cols = torch.where(flips.to(device).bool()[:, None], left + (width - 1 - ar_w), left + ar_w)  # [B, W]
    valid = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
    # Advanced indices around a slice put the broadcast dims first: the result is [B, H, W, C].
    gathered = images_uint8[
        sample[:, None, None], :, rows.clamp(0, height - 1)[:, :, None], cols.clamp(0, width - 1)[:, None, :]
    ]
    gathered = gathered * valid[..., None].to(gathered.dtype)
    return gathered.permute(0, 3, 1, 2)


def normalize(images_uint8: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``(x / 255 - mean) / std`` as one multiply-add: ``scale = 1 / (255 std)``, ``shift = -mean / std``."""
    return torch.addcmul(shift, images_uint8.float(), scale)


def _norm_params(
    mean: Sequence[float], std: Sequence[float], channels: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    if len(mean) != channels or len(std) != channels:
        raise UsageError(
            f"the dataset has {channels} channels but mean/std give {len(mean)}/{len(std)} values; "
            "fix the dataset's normalization."
        )
    mean_t = torch.tensor(mean, dtype=torch.float64).view(1, channels, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float64).view(1, channels, 1, 1)
    scale = (1.0 / (255.0 * std_t)).float().to(device)
    shift = (-mean_t / std_t).float().to(device)
    return scale, shift


def _batches_per_epoch(samples: int, batch_size: int, drop_last: bool) -> int:
    # Keep a short last batch when the set is smaller than one batch (quick --limit-train runs).
    if drop_last and samples >= batch_size:
        return samples // batch_size
    return math.ceil(samples / batch_size)


def _per_rank_batch(batch_size: int, world_size: int) -> int:
    if batch_size < world_size:
        raise UsageError(
            f"batch size {batch_size} is smaller than the {world_size} processes; use a batch size of at "
            f"least {world_size}."
        )
    return batch_size // world_size


def _contiguous_shard(samples: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s ``[start, stop)`` in index order; shards are ceil(N/world) long, the last shorter."""
    size = math.ceil(samples / world_size)
    return min(rank * size, samples), min((rank + 1) * size, samples)


class _ShardedBatches:
    """What both batch sources share: the per-rank batch size, how samples are split over ranks
    (training: a strided shard of each epoch's permutation; evaluation: contiguous shards in index
    order) and the number of batches per pass."""

    def _shard(
        self, samples: int, batch_size: int, runtime: Runtime, train: bool, drop_last: bool | None
    ) -> None:
        self.runtime = runtime
        self.train = train
        self.samples = samples
        self.batch_size = _per_rank_batch(batch_size, runtime.world_size) if train else batch_size
        self.drop_last = train if drop_last is None else drop_last
        world = runtime.world_size
        if train:
            self.used = samples - samples % world if samples >= world else samples
            self.shard_size = self.used // world if samples >= world else samples
        else:
            self.shard_range = _contiguous_shard(samples, runtime.rank, world)
            self.shard_size = self.shard_range[1] - self.shard_range[0]

    def __len__(self) -> int:
        return _batches_per_epoch(self.shard_size, self.batch_size, self.drop_last)

    def shard_sizes(self) -> list[int]:
        """Rows each rank yields per pass in eval mode (for gathering results)."""
        world = self.runtime.world_size
        return [
            stop - start for start, stop in (_contiguous_shard(self.samples, r, world) for r in range(world))
        ]

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch()

    def epoch(self, start_batch: int = 0) -> Iterator[Batch]:
        raise NotImplementedError


class DeviceBatches(_ShardedBatches):
    """Batches of an in-memory split whose uint8 images were moved to the device once.

    ``train=True``: a new shuffled, augmented epoch at each :meth:`epoch` call (each rank gets a
    strided shard of the permutation and ``batch_size // world_size`` samples per batch).
    ``train=False``: index order, no augmentation, each rank a contiguous shard (see :meth:`shard`).
    """

    def __init__(
        self,
        images_uint8: torch.Tensor,
        labels: torch.Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        batch_size: int,
        runtime: Runtime,
        train: bool,
        crop_padding: int = 4,
        hflip: bool = True,
        generator: torch.Generator | None = None,
        limit: int | None = None,
        drop_last: bool | None = None,
    ) -> None:
        if images_uint8.dtype != torch.uint8 or images_uint8.dim() != 4:
            raise UsageError(
                "in-memory images must be uint8 [N, C, H, W], got "
                f"{images_uint8.dtype} {tuple(images_uint8.shape)}; fix the dataset builder."
            )
        if labels.shape[0] != images_uint8.shape[0]:
            raise UsageError(
                f"{images_uint8.shape[0]} images but {labels.shape[0]} labels; fix the dataset builder."
            )
        if train and generator is None:
            raise ValueError("training batches need a generator for the data order")
        if crop_padding < 0:
            raise UsageError(f"crop padding must be >= 0, got {crop_padding}.")
        if limit is not None:
            images_uint8, labels = images_uint8[:limit], labels[:limit]
        if images_uint8.shape[0] == 0:
            raise UsageError("the split has no samples; check the dataset or --limit-train/--limit-test.")
        self._shard(int(images_uint8.shape[0]), batch_size, runtime, train, drop_last)
        self.padding = int(crop_padding)
        self.hflip = bool(hflip)
        self.generator = generator
        device = runtime.device
        # NHWC storage makes the per-batch gather read contiguous pixels.
        self.images = images_uint8.to(device).contiguous(memory_format=torch.channels_last)
        self.labels = labels.to(device=device, dtype=torch.long)
        self.scale, self.shift = _norm_params(mean, std, images_uint8.shape[1], device)

    def epoch(self, start_batch: int = 0) -> Iterator[Batch]:
        """One pass; the random draws happen now (not lazily), so the generator state after this
        call is the next epoch's.  ``start_batch`` skips batches already done (mid-epoch resume)."""
        if not self.train:
            return self._eval_batches(start_batch)
        gen = self.generator
        perm = torch.randperm(self.samples, generator=gen)
        offsets = torch.randint(0, 2 * self.padding + 1, (2, self.samples), generator=gen)
        flips = torch.rand(self.samples, generator=gen) < 0.5
        if not self.hflip:
            flips.zero_()
        rank, world = self.runtime.rank, self.runtime.world_size
        take = slice(rank, self.used, world) if self.samples >= world else slice(0, self.samples)
        device = self.runtime.device
        perm, flips = perm[take].to(device), flips[take].to(device)
        offsets = offsets[:, take].to(device)
        return self._train_batches(perm, offsets, flips, start_batch)

    def _train_batches(
        self, perm: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, start_batch: int
    ) -> Iterator[Batch]:
        size = self.batch_size
        for b in range(start_batch, len(self)):
            part = slice(b * size, (b + 1) * size)
            index = perm[part]
            crops = crop_flip(
                self.images, offsets[0, part], offsets[1, part], flips[part], self.padding, index=index
            )
            views = view_code(offsets[0, part], offsets[1, part], flips[part], self.padding)
            source = RowSource(
                self.images,
                index,
                self.padding,
                self.hflip,
                self.scale,
                self.shift,
                self.runtime.channels_last,
            )
            yield Batch(self._finish(crops), self.labels[index], index, views, source)

    def _eval_batches(self, start_batch: int) -> Iterator[Batch]:
        start, stop = self.shard_range
        for b in range(start_batch, len(self)):
            lo = start + b * self.batch_size
            hi = min(lo + self.batch_size, stop)
            index = torch.arange(lo, hi, device=self.runtime.device)
            yield Batch(self._finish(self.images[lo:hi]), self.labels[lo:hi], index)

    def _finish(self, images_uint8: torch.Tensor) -> torch.Tensor:
        out = normalize(images_uint8, self.scale, self.shift)
        return (
            out.contiguous(memory_format=torch.channels_last)
            if self.runtime.channels_last
            else out.contiguous()
        )


class _IndexSampler:
    """A sampler over a list the owner replaces each epoch (keeps persistent workers usable)."""

    def __init__(self) -> None:
        self.indices: list[int] = []

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class LoaderBatches(_ShardedBatches):
    """Batches of a torch Dataset yielding ``(image, label, index)`` through DataLoader workers.

    Same sharding and :meth:`epoch` contract as :class:`DeviceBatches`; augmentation is the
    dataset's own transforms (run in the workers).
    """

    def __init__(
        self,
        dataset: torch.utils.data.Dataset,
        batch_size: int,
        runtime: Runtime,
        train: bool,
        generator: torch.Generator | None = None,
        limit: int | None = None,
        drop_last: bool | None = None,
        num_workers: int = 4,
    ) -> None:
        from torch.utils.data import DataLoader

        if train and generator is None:
            raise ValueError("training batches need a generator for the data order")
        total = len(dataset)  # type: ignore[arg-type]  # map-style datasets are Sized
        samples = min(total, limit) if limit is not None else total
        if samples == 0:
            raise UsageError("the split has no samples; check the dataset or --limit-train/--limit-test.")
        self._shard(samples, batch_size, runtime, train, drop_last)
        self.generator = generator
        self.sampler = _IndexSampler()
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        num_workers = min(num_workers, cpus)
        self.loader_generator = torch.Generator()
        cuda = runtime.device.type == "cuda"
        self.loader = DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=num_workers,
            pin_memory=cuda,
            drop_last=False,  # the index list is already cut to whole batches
            persistent_workers=num_workers > 0,
            generator=self.loader_generator,
            prefetch_factor=4 if num_workers > 0 else None,
        )

    def epoch(self, start_batch: int = 0) -> Iterator[Batch]:
        """One pass (draws happen now, as in :meth:`DeviceBatches.epoch`)."""
        if self.train:
            gen = self.generator
            perm = torch.randperm(self.samples, generator=gen)
            # Worker augmentation seeds follow the data generator, so they are checkpointed with it.
            self.loader_generator.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
            rank, world = self.runtime.rank, self.runtime.world_size
            take = slice(rank, self.used, world) if self.samples >= world else slice(0, self.samples)
            shard = perm[take]
        else:
            shard = torch.arange(*self.shard_range)
        stop = min(len(self) * self.batch_size, shard.shape[0])
        self.sampler.indices = shard[start_batch * self.batch_size : stop].tolist()
        return self._batches()

    def _batches(self) -> Iterator[Batch]:
        device = self.runtime.device
        memory_format = torch.channels_last if self.runtime.channels_last else torch.contiguous_format
        for images, labels, index in self.loader:
            images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            yield Batch(
                images.float(),
                torch.as_tensor(labels).to(device, dtype=torch.long, non_blocking=True),
                torch.as_tensor(index).to(device, dtype=torch.long, non_blocking=True),
            )


def make_batches(
    dataset: InMemoryDataset | FolderDataset,
    split: str,
    runtime: Runtime,
    batch_size: int,
    *,
    train: bool,
    generator: torch.Generator | None = None,
    limit: int | None = None,
    num_workers: int = 4,
) -> DeviceBatches | LoaderBatches:
    """The right batch source for ``dataset``: on-device for in-memory sets, DataLoader for folders.

    ``train=True`` only makes sense for ``split="train"`` (shuffled and augmented); otherwise the
    split is read in index order without augmentation.
    """
    if split not in ("train", "test"):
        raise UsageError(f"split must be 'train' or 'test', got {split!r}.")
    if train and split != "train":
        raise UsageError("only the training split can be shuffled and augmented.")
    if isinstance(dataset, InMemoryDataset):
        images = dataset.train_images if split == "train" else dataset.test_images
        return DeviceBatches(
            images,
            dataset.labels(split),
            dataset.mean,
            dataset.std,
            batch_size,
            runtime,
            train=train,
            crop_padding=dataset.crop_padding,
            hflip=dataset.hflip,
            generator=generator,
            limit=limit,
        )
    if isinstance(dataset, FolderDataset):
        source = dataset.train if train else dataset.split(split)
        return LoaderBatches(
            source,
            batch_size,
            runtime,
            train=train,
            generator=generator,
            limit=limit,
            num_workers=num_workers,
        )
    raise UsageError(
        f"unsupported dataset type {type(dataset).__name__}; a dataset plugin must return an "
        "InMemoryDataset or a FolderDataset."
    )

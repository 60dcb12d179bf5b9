"""On-device batches: crop/flip against a per-sample reference, sharding, order, folder loader."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from ekdcli.engine.options import EngineOptions
from ekdcli.engine.pipeline import DeviceBatches, LoaderBatches, crop_flip, make_batches
from ekdcli.engine.runtime import Runtime
from ekdcli.engine.testing import synthetic_dataset
from ekdcli.sdk.contracts import FolderDataset
from ekdcli.util.errors import UsageError


def cpu_runtime(rank: int = 0, world: int = 1, channels_last: bool = True) -> Runtime:
    runtime = Runtime(EngineOptions(device="cpu", precision="fp32", channels_last=channels_last))
    runtime.rank, runtime.world_size = rank, world  # pretend to be one rank of a group
    return runtime


def reference_crop(image: torch.Tensor, oy: int, ox: int, flip: bool, padding: int) -> torch.Tensor:
    """torchvision's RandomCrop(pad) + hflip for one image, written with plain slicing."""
    height, width = image.shape[1:]
    padded = F.pad(image, (padding, padding, padding, padding))  # zeros
    crop = padded[:, oy : oy + height, ox : ox + width]
    return crop.flip(-1) if flip else crop


def unnormalize(images: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    """Back to 0..255 in float64 (the test's own inverse of ToTensor + Normalize)."""
    m = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    return (images.double() * s + m) * 255.0


def test_crop_flip_equals_per_sample_reference() -> None:
    gen = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (12, 3, 7, 9), dtype=torch.uint8, generator=gen)
    padding = 3
    oy = torch.randint(0, 2 * padding + 1, (12,), generator=gen)
    ox = torch.randint(0, 2 * padding + 1, (12,), generator=gen)
    flips = torch.rand(12, generator=gen) < 0.5
    out = crop_flip(images, oy, ox, flips, padding)
    assert out.shape == images.shape and out.dtype == torch.uint8
    for i in range(12):
        expected = reference_crop(images[i], int(oy[i]), int(ox[i]), bool(flips[i]), padding)
        assert torch.equal(out[i], expected), f"sample {i}"


def test_crop_flip_gathers_by_index_and_handles_no_padding() -> None:
    gen = torch.Generator().manual_seed(4)
    pool = torch.randint(0, 256, (20, 1, 5, 5), dtype=torch.uint8, generator=gen)
    index = torch.tensor([7, 7, 0, 19, 3])
    zeros = torch.zeros(5, dtype=torch.long)
    flips = torch.tensor([False, True, False, True, False])
    out = crop_flip(pool, zeros, zeros, flips, 0, index=index)
    for row, (i, flip) in enumerate(zip(index.tolist(), flips.tolist(), strict=True)):
        assert torch.equal(out[row], pool[i].flip(-1) if flip else pool[i])


def test_training_epoch_is_an_augmented_permutation() -> None:
    data = synthetic_dataset(train=64, padding=2)
    gen = torch.Generator().manual_seed(0)
    batches = DeviceBatches(
        data.train_images, data.train_labels, data.mean, data.std, 16, cpu_runtime(), True, 2, True, gen
    )
    assert len(batches) == 4
    seen, offsets_used, flipped = [], set(), 0
    for batch in batches.epoch():
        assert batch.images.dtype == torch.float32
        assert batch.images.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(batch.labels, data.train_labels[batch.indices])
        pixels = unnormalize(batch.images, data.mean, data.std)
        for row, index in enumerate(batch.indices.tolist()):
            source = data.train_images[index]
            matches = [
                (oy, ox, flip)
                for oy, ox, flip in itertools.product(range(5), range(5), (False, True))
                if torch.allclose(pixels[row], reference_crop(source, oy, ox, flip, 2).double(), atol=1e-3)
            ]
            assert matches, f"row {row} is no crop/flip of sample {index}"
            offsets_used.add(matches[0][:2])
            flipped += matches[0][2]
        seen += batch.indices.tolist()
    assert sorted(seen) == list(range(64))
    assert len(offsets_used) > 5 and 10 < flipped < 54  # the draws vary per sample


def test_epochs_reproduce_from_the_generator_state_and_resume_mid_epoch() -> None:
    data = synthetic_dataset(train=48)

    def source(seed: int) -> DeviceBatches:
        gen = torch.Generator().manual_seed(seed)
        return DeviceBatches(
            data.train_images, data.train_labels, data.mean, data.std, 8, cpu_runtime(), True, 2, True, gen
        )

    a, b = source(1), source(1)
    first = [x.images for x in a.epoch()]
    assert all(torch.equal(x, y.images) for x, y in zip(first, b.epoch(), strict=True))
    second = [x.indices for x in a.epoch()]
    assert not torch.equal(torch.cat(second), torch.cat([x.indices for x in source(1).epoch()]))
    # A resumed epoch from the same start state gives the tail of the same batches.
    c = source(1)
    tail = [x.images for x in c.epoch(start_batch=4)]
    assert len(tail) == 2 and all(torch.equal(x, y) for x, y in zip(tail, first[4:], strict=True))


def test_ranks_get_disjoint_shards_of_one_permutation() -> None:
    data = synthetic_dataset(train=70)
    shards = []
    for rank in range(2):
        gen = torch.Generator().manual_seed(5)
        batches = DeviceBatches(
            data.train_images,
            data.train_labels,
            data.mean,
            data.std,
            16,
            cpu_runtime(rank, 2),
            True,
            2,
            True,
            gen,
        )
        assert batches.batch_size == 8 and len(batches) == 4  # 35 samples per rank, whole batches
        shards.append(torch.cat([b.indices for b in batches.epoch()]).tolist())
    assert len(shards[0]) == len(shards[1]) == 32
    assert not set(shards[0]) & set(shards[1])


def test_small_set_keeps_one_short_batch_and_limit_cuts() -> None:
    data = synthetic_dataset(train=64)
    gen = torch.Generator().manual_seed(0)
    batches = make_batches(data, "train", cpu_runtime(), 64, train=True, generator=gen, limit=10)
    epoch = list(batches.epoch())
    assert len(epoch) == 1 and sorted(epoch[0].indices.tolist()) == list(range(10))


def test_eval_batches_are_plain_and_in_order() -> None:
    data = synthetic_dataset(test=37)
    batches = make_batches(data, "test", cpu_runtime(channels_last=False), 10, train=False)
    epoch = list(batches.epoch())
    assert [len(b) for b in epoch] == [10, 10, 10, 7]
    images = torch.cat([b.images for b in epoch])
    assert torch.equal(torch.cat([b.indices for b in epoch]), torch.arange(37))
    assert torch.allclose(unnormalize(images, data.mean, data.std), data.test_images.double(), atol=1e-3)
    assert epoch[0].images.is_contiguous()


def test_eval_shards_are_contiguous() -> None:
    data = synthetic_dataset(test=37)
    parts = [
        torch.cat([b.indices for b in make_batches(data, "test", cpu_runtime(r, 2), 8, train=False).epoch()])
        for r in range(2)
    ]
    assert parts[0].tolist() == list(range(19)) and parts[1].tolist() == list(range(19, 37))


class IndexedTensors(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        return self.images[i].float() / 255, int(self.labels[i]), i


def test_folder_dataset_batches_through_a_dataloader() -> None:
    data = synthetic_dataset(train=40, test=13)
    train = IndexedTensors(data.train_images, data.train_labels)
    test = IndexedTensors(data.test_images, data.test_labels)
    folder = FolderDataset(
        "folder",
        train,
        train,
        test,
        data.train_labels.tolist(),
        data.test_labels.tolist(),
        data.class_names,
        data.mean,
        data.std,
    )
    runtime = cpu_runtime()
    gen = torch.Generator().manual_seed(0)
    batches = make_batches(folder, "train", runtime, 16, train=True, generator=gen, num_workers=0)
    assert isinstance(batches, LoaderBatches) and len(batches) == 2
    epoch = list(batches.epoch())
    seen = torch.cat([b.indices for b in epoch])
    assert len(seen) == 32 and len(set(seen.tolist())) == 32
    for b in epoch:
        assert torch.equal(b.labels, data.train_labels[b.indices])
        assert b.images.is_contiguous(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(0)
    again = make_batches(folder, "train", runtime, 16, train=True, generator=gen, num_workers=0)
    resumed = list(again.epoch(1))
    assert len(resumed) == 1 and torch.equal(resumed[0].indices, epoch[1].indices)
    test_batches = make_batches(folder, "test", runtime, 5, train=False, num_workers=0)
    order = torch.cat([b.indices for b in test_batches.epoch()])
    assert torch.equal(order, torch.arange(13))


def test_bad_inputs_are_usage_errors() -> None:
    data = synthetic_dataset()
    runtime = cpu_runtime()
    with pytest.raises(UsageError, match="split must be 'train' or 'test'"):
        make_batches(data, "val", runtime, 8, train=False)
    with pytest.raises(UsageError, match="only the training split"):
        make_batches(data, "test", runtime, 8, train=True, generator=torch.Generator())
    with pytest.raises(UsageError, match="must be uint8"):
        DeviceBatches(data.train_images.float(), data.train_labels, data.mean, data.std, 8, runtime, False)
    with pytest.raises(UsageError, match="3 channels but mean/std give 1/1"):
        DeviceBatches(data.train_images, data.train_labels, (0.5,), (0.2,), 8, runtime, False)
    with pytest.raises(UsageError, match="smaller than the 4 processes"):
        DeviceBatches(
            data.train_images,
            data.train_labels,
            data.mean,
            data.std,
            2,
            cpu_runtime(0, 4),
            True,
            generator=torch.Generator(),
        )

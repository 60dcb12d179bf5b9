"""The ImageFolder-based imagenet dataset, on a tiny tree written with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ekd_plugins.datasets.imagenet import IMAGENET_MEAN, IMAGENET_STD, imagenet
from PIL import Image

from ekdcli.sdk.contracts import FolderDataset
from ekdcli.util.errors import UsageError

COLOURS = {"cat": (200, 30, 90), "dog": (10, 120, 250)}


def write_tree(root: Path, splits: tuple[str, ...] = ("train", "val")) -> None:
    """2 classes x 2 uniformly coloured images per split (a known colour makes values checkable)."""
    for split in splits:
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (40 + 8 * i, 30), colour).save(folder / f"{i}.png")


def _normalized(colour: tuple[int, int, int]) -> np.ndarray:
    return (np.array(colour, dtype=np.float64) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)


def test_imagenet_folder_yields_image_label_index(tmp_path: Path) -> None:
    write_tree(tmp_path)
    ds = imagenet(str(tmp_path), image_size=32)
    assert isinstance(ds, FolderDataset) and ds.class_names == ["cat", "dog"] and ds.num_classes == 2
    assert ds.train_labels == [0, 0, 1, 1] and ds.test_labels == [0, 0, 1, 1] and ds.image_size == (32, 32)
    for split in (ds.train, ds.train_eval, ds.test):
        image, label, index = split[3]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and (label, index) == (1, 3)
    # evaluation transform: a uniform image stays uniform, normalized with the ImageNet statistics
    image, _, _ = ds.split("train")[2]
    expected = _normalized(COLOURS["dog"])[:, None, None] * np.ones((1, 32, 32))
    np.testing.assert_allclose(image.numpy(), expected, atol=1e-5)
    assert ds.split("test") is ds.test and ds.fingerprint("train").startswith("4:")


def test_imagenet_default_size_and_dataloader(tmp_path: Path) -> None:
    write_tree(tmp_path)
    ds = imagenet(str(tmp_path))
    images, labels, indices = next(iter(torch.utils.data.DataLoader(ds.test, batch_size=4)))
    assert images.shape == (4, 3, 224, 224)
    assert labels.tolist() == [0, 0, 1, 1] and indices.tolist() == [0, 1, 2, 3]


def test_imagenet_errors_name_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="needs its folder; pass --data-root DIR"):
        imagenet(None)
    with pytest.raises(UsageError, match="is not a directory"):
        imagenet(str(tmp_path / "absent"))
    write_tree(tmp_path, splits=("train",))
    with pytest.raises(UsageError, match=f"lacks {tmp_path / 'val'};"):
        imagenet(str(tmp_path))
    (tmp_path / "val").mkdir()
    with pytest.raises(UsageError, match="holds no images in class folders"):
        imagenet(str(tmp_path))
    (tmp_path / "val" / "bird").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "bird" / "0.png")
    with pytest.raises(UsageError, match="different class folders"):
        imagenet(str(tmp_path))
    with pytest.raises(UsageError, match="cannot be downloaded automatically"):
        imagenet(None, download=True)

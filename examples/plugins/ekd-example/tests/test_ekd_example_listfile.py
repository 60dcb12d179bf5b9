"""listfile-lt: list files of 'path label' lines into an in-memory dataset; errors name the line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ekd_example.listfile import listfile_lt, read_list
from PIL import Image

from ekdcli.sdk.errors import UsageError

COUNTS = [5, 2, 1]  # a long tail: class 0 is the head


def _write(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def lt_root(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """8x8 PNGs (lossless) of random pixels; train has COUNTS images per class, test one each."""
    rng = np.random.default_rng(0)
    root = tmp_path / "lt"
    pixels: dict[str, np.ndarray] = {}
    train_lines, test_lines = ["# ImageNet-LT style list", ""], []
    for label, n in enumerate(COUNTS):
        for i in range(n):
            rel = f"train/c{label}/img {i}.png"  # a space in the name: the label is the last field
            pixels[rel] = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
            _write(root / rel, pixels[rel])
            train_lines.append(f"{rel} {label}")
        rel = f"val/{label}.png"
        pixels[rel] = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        _write(root / rel, pixels[rel])
        test_lines.append(f"{rel}\t{label}")
    rng.shuffle(train_lines[2:])
    (root / "train.txt").write_text("\n".join(train_lines) + "\n")
    (root / "test.txt").write_text("\n".join(test_lines) + "\n")
    return root, pixels


def test_images_labels_and_class_counts_read_back(lt_root: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, pixels = lt_root
    data = listfile_lt(str(root), image_size=8, workers=2)
    paths, labels = read_list(root / "train.txt")
    assert data.train_labels.tolist() == labels.tolist() and len(paths) == sum(COUNTS)
    expected = np.stack([pixels[p] for p in paths]).transpose(0, 3, 1, 2)  # NHWC -> NCHW
    np.testing.assert_array_equal(data.train_images.numpy(), expected)
    np.testing.assert_array_equal(
        data.test_images.numpy(), np.stack([pixels[f"val/{c}.png"] for c in range(3)]).transpose(0, 3, 1, 2)
    )
    assert data.test_labels.tolist() == [0, 1, 2]
    assert data.info["class_counts"] == COUNTS and data.info["imbalance_ratio"] == 5.0
    assert data.class_names == ["0", "1", "2"] and data.name == "listfile-lt"
    # normalization comes from the training images, per channel, in [0, 1] units
    np.testing.assert_allclose(
        data.mean, expected.transpose(1, 0, 2, 3).reshape(3, -1).mean(1) / 255.0, rtol=1e-6
    )


def test_images_are_resized_on_the_shorter_side_and_centre_cropped(tmp_path: Path) -> None:
    wide = np.zeros((32, 64, 3), dtype=np.uint8)  # H 32, W 64: red | green (middle half) | blue
    wide[:, :16] = (255, 0, 0)
    wide[:, 16:48] = (0, 255, 0)
    wide[:, 48:] = (0, 0, 255)
    _write(tmp_path / "wide.png", wide)
    _write(tmp_path / "tall.png", np.full((40, 20, 3), 77, dtype=np.uint8))
    (tmp_path / "train.txt").write_text("wide.png 0\ntall.png 1\n")
    (tmp_path / "test.txt").write_text("tall.png 1\n")
    (tmp_path / "classes.txt").write_text("stripes\ngrey\n")
    data = listfile_lt(str(tmp_path), image_size=16, workers=1)
    assert data.train_images.shape == (2, 3, 16, 16) and data.class_names == ["stripes", "grey"]
    crop = data.train_images[0].numpy()  # 64x32 -> 32x16, the middle 16 columns are the green band
    assert (crop[:, :, 2:14] == np.array([0, 255, 0], dtype=np.uint8)[:, None, None]).all()
    assert (data.train_images[1] == 77).all()


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="listfile-lt needs --data-root"):
        listfile_lt(None)
    with pytest.raises(UsageError, match="is not a folder"):
        listfile_lt(str(tmp_path / "nope"))
    with pytest.raises(UsageError, match="train.txt does not exist"):
        listfile_lt(str(tmp_path))
    (tmp_path / "train.txt").write_text("a.png 0\nb.png cat\n")
    with pytest.raises(UsageError, match=r"train.txt:2: expected 'relative/path.jpg label'"):
        listfile_lt(str(tmp_path))
    (tmp_path / "train.txt").write_text("a.png 0\n")
    (tmp_path / "test.txt").write_text("a.png 0\n")
    with pytest.raises(UsageError, match="a.png named in the list file does not exist"):
        listfile_lt(str(tmp_path), workers=1)
    (tmp_path / "a.png").write_text("not an image")
    with pytest.raises(UsageError, match="a.png could not be read"):
        listfile_lt(str(tmp_path), workers=1)
    with pytest.raises(UsageError, match="cannot download"):
        listfile_lt(str(tmp_path), download=True)
    with pytest.raises(UsageError, match="dataset 'listfile-lt' has no option 'size'"):
        listfile_lt(str(tmp_path), size=3)

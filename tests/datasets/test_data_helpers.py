"""ekdcli.sdk.data and ekdcli.sdk.splits: TensorSplit normalization, from_arrays, read_npz."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ekdcli.sdk.data import channel_stats, from_arrays, read_npz, to_nchw
from ekdcli.sdk.splits import TensorSplit, normalize
from ekdcli.util.errors import UsageError

MEAN = (0.5, 0.25, 0.125)
STD = (0.2, 0.3, 0.4)


def _rand_nhwc(n: int, h: int = 4, w: int = 5, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def test_tensor_split_normalizes_like_a_hand_computation() -> None:
    x = _rand_nhwc(6)
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([3, 1, 4, 1, 5, 9])
    split = TensorSplit(images, labels, MEAN, STD)
    assert len(split) == 6
    image, label, index = split[4]
    expected = (x[4].astype(np.float64) / 255.0 - np.array(MEAN)) / np.array(STD)  # HWC
    assert image.dtype == torch.float32 and image.shape == (3, 4, 5)
    np.testing.assert_allclose(image.numpy(), expected.transpose(2, 0, 1), rtol=0, atol=1e-5)
    assert (label, index) == (5, 4) and isinstance(label, int) and isinstance(index, int)
    assert split[-1][1:] == (9, 5)


def test_tensor_split_batches_through_a_dataloader_in_order() -> None:
    images = torch.from_numpy(_rand_nhwc(5)).permute(0, 3, 1, 2).contiguous()
    split = TensorSplit(images, torch.arange(5) * 2, MEAN, STD)
    batch, labels, indices = next(iter(torch.utils.data.DataLoader(split, batch_size=5)))
    assert torch.equal(indices, torch.arange(5)) and torch.equal(labels, torch.arange(5) * 2)
    torch.testing.assert_close(batch, normalize(images, MEAN, STD))


def test_tensor_split_rejects_bad_inputs() -> None:
    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    with pytest.raises(UsageError, match="uint8 images"):
        TensorSplit(images.float(), torch.zeros(4), MEAN, STD)
    with pytest.raises(UsageError, match="one label per image"):
        TensorSplit(images, torch.zeros(3), MEAN, STD)
    with pytest.raises(UsageError, match="one value per channel"):
        TensorSplit(images, torch.zeros(4), (0.5,), (0.2,))


def test_from_arrays_accepts_nhwc_and_nchw_and_computes_stats() -> None:
    x_train, x_test = _rand_nhwc(8, seed=1), _rand_nhwc(3, seed=2)
    y_train, y_test = np.arange(8) % 4, np.array([0, 1, 3])
    a = from_arrays("toy", x_train, y_train, x_test, y_test)
    b = from_arrays("toy", x_train.transpose(0, 3, 1, 2), y_train, x_test.transpose(0, 3, 1, 2), y_test)
    for ds in (a, b):
        assert ds.train_images.shape == (8, 3, 4, 5) and ds.train_images.is_contiguous()
        assert ds.train_labels.dtype == torch.int64 and ds.class_names == ["0", "1", "2", "3"]
        assert torch.equal(ds.train_images[2], torch.from_numpy(x_train[2]).permute(2, 0, 1))
    as_float = x_train.astype(np.float64) / 255.0
    np.testing.assert_allclose(a.mean, as_float.mean(axis=(0, 1, 2)), atol=1e-12)
    np.testing.assert_allclose(a.std, as_float.std(axis=(0, 1, 2)), atol=1e-12)
    assert a.mean == b.mean and a.std == b.std
    assert a.split("test")[2][1:] == (3, 2)


def test_from_arrays_grey_three_dim_and_given_stats() -> None:
    x = np.random.default_rng(3).integers(0, 256, size=(4, 6, 6), dtype=np.uint8)
    ds = from_arrays("grey", x, [0, 1, 0, 1], x[:2], [1, 0], ["a", "b"], mean=(0.5,), std=(0.25,))
    assert ds.in_channels == 1 and ds.image_size == (6, 6) and ds.mean == (0.5,) and ds.num_classes == 2
    assert channel_stats(ds.train_images)[0][0] == pytest.approx(x.astype(np.float64).mean() / 255.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"x_train": np.zeros((2, 3, 4, 3), np.uint8)}, "channel axis"),
        ({"x_train": np.zeros((2, 4, 4, 3), np.float32)}, "must be uint8"),
        ({"y_train": [0, 7]}, r"labels 0\.\.7 but toy has 2 classes"),
        ({"y_test": [0, 1, 1]}, "one label per image"),
        ({"mean": (0.5, 0.5, 0.5)}, "both mean and std"),
        ({"x_test": np.zeros((1, 8, 8, 3), np.uint8), "y_test": [0]}, "same channels and size"),
    ],
)
def test_from_arrays_reports_bad_input(kwargs: dict, message: str) -> None:
    args = {
        "x_train": np.zeros((2, 4, 4, 3), np.uint8),
        "y_train": [0, 1],
        "x_test": np.zeros((1, 4, 4, 3), np.uint8),
        "y_test": [1],
        "class_names": ["a", "b"],
    }
    args.update(kwargs)
    with pytest.raises(UsageError, match=message):
        from_arrays("toy", **args)


def test_to_nchw_explicit_layout_and_bad_layout() -> None:
    x = np.zeros((2, 3, 3, 3), np.uint8)
    x[0, 1, 2, 0] = 7
    assert to_nchw(x, "NHWC")[0, 0, 1, 2] == 7
    assert to_nchw(x, "nchw")[0, 1, 2, 0] == 7
    with pytest.raises(UsageError, match="unknown image layout 'HWC'"):
        to_nchw(x, "HWC")


def test_read_npz_round_trip_and_errors(tmp_path) -> None:
    good = tmp_path / "good.npz"
    x = _rand_nhwc(3)
    np.savez(
        good,
        x_train=x,
        y_train=np.array([0, 1, 2]),
        x_test=x[:1],
        y_test=np.array([2]),
        class_names=["a", "b", "c"],
    )
    arrays = read_npz(good)
    assert np.array_equal(arrays["x_train"], x) and list(arrays["class_names"]) == ["a", "b", "c"]

    partial = tmp_path / "partial.npz"
    np.savez(partial, x_train=x, y_train=np.array([0, 1, 2]))
    with pytest.raises(UsageError, match="lacks the arrays x_test, y_test"):
        read_npz(partial)

    floats = tmp_path / "floats.npz"
    np.savez(floats, x_train=x / 255.0, y_train=np.array([0, 1, 2]), x_test=x[:1], y_test=np.array([2]))
    with pytest.raises(UsageError, match="x_train .* is float64; images must be uint8"):
        read_npz(floats)

    objects = tmp_path / "objects.npz"
    names = np.array(["a", 1], dtype=object)
    np.savez(
        objects, x_train=x, y_train=np.array([0, 1, 2]), x_test=x[:1], y_test=np.array([2]), class_names=names
    )
    with pytest.raises(UsageError, match="needs pickle"):
        read_npz(objects)

    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(UsageError, match="not a readable .npz"):
        read_npz(junk)
    with pytest.raises(UsageError, match="does not exist"):
        read_npz(tmp_path / "nope.npz")

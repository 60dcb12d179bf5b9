"""The embedded digits default and the synthetic `fake` dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ekd_plugins.datasets.digits import digits, stratified_test_mask
from ekd_plugins.datasets.fake import fake
from sklearn.datasets import load_digits

from ekdcli.sdk.contracts import InMemoryDataset
from ekdcli.util.errors import UsageError


@pytest.fixture(scope="module")
def ds() -> InMemoryDataset:
    return digits()


def test_digits_shapes_and_metadata(ds: InMemoryDataset) -> None:
    assert ds.train_images.dtype == torch.uint8 and ds.train_images.shape[1:] == (1, 32, 32)
    assert ds.train_images.shape[0] + ds.test_images.shape[0] == 1797
    assert ds.class_names == [str(d) for d in range(10)] and ds.in_channels == 1
    assert ds.hflip is False and ds.crop_padding == 4 and len(ds.mean) == 1
    assert int(ds.train_images.max()) > 200 and int(ds.train_images.min()) == 0
    expected_mean = ds.train_images.double().mean().item() / 255.0
    assert ds.mean[0] == pytest.approx(expected_mean, rel=1e-9)


def test_digits_split_is_stratified_twenty_percent(ds: InMemoryDataset) -> None:
    per_class = np.bincount(load_digits().target, minlength=10)
    test = torch.bincount(ds.test_labels, minlength=10).numpy()
    train = torch.bincount(ds.train_labels, minlength=10).numpy()
    assert test.tolist() == (per_class // 5).tolist()
    assert (train + test).tolist() == per_class.tolist()
    assert ds.test_images.shape[0] == 355 and ds.train_images.shape[0] == 1442


def test_digits_test_images_are_every_fifth_of_each_class(ds: InMemoryDataset) -> None:
    bunch = load_digits()
    class3 = np.flatnonzero(bunch.target == 3)
    chosen = class3[4::5]  # 5th, 10th, ... image of class 3 in scikit-learn's order
    ours = ds.test_images[ds.test_labels == 3].double()
    assert ours.shape[0] == chosen.shape[0]
    # block-average back to 8x8: each image is nearest to exactly its own original among all 1,797
    pooled = torch.nn.functional.avg_pool2d(ours, 4).flatten(1).numpy()
    originals = bunch.images.reshape(1797, 64) * 255.0 / 16.0
    distances = ((pooled[:, None, :] - originals[None]) ** 2).sum(axis=2)
    assert distances.argmin(axis=1).tolist() == chosen.tolist()
    assert np.corrcoef(pooled.ravel(), originals[chosen].ravel())[0, 1] > 0.95


def test_stratified_mask_by_hand() -> None:
    labels = np.array([0, 1, 0, 0, 1, 0, 0, 1, 1, 1, 0])
    mask = stratified_test_mask(labels, every=2)
    # class 0 at positions 0,2,3,5,6,10 -> ranks 1,3,5 are test: 2,5,10; class 1 at 1,4,7,8,9 -> 4,8
    assert np.flatnonzero(mask).tolist() == [2, 4, 5, 8, 10]


def test_digits_is_deterministic_and_rejects_unknown_options(ds: InMemoryDataset) -> None:
    assert torch.equal(digits().test_images, ds.test_images)
    with pytest.raises(UsageError, match="dataset 'digits' has no option 'colour'"):
        digits(colour=True)


def test_fake_deterministic_per_seed_and_balanced() -> None:
    a, b, c = fake(seed=1), fake(seed=1), fake(seed=2)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train_images, c.train_images)
    assert a.train_images.shape == (512, 3, 32, 32) and a.test_images.shape == (128, 3, 32, 32)
    assert torch.bincount(a.train_labels).tolist() == [52, 52] + [51] * 8
    small = fake(n_train=12, n_test=6, num_classes=3, channels=1, height=8, width=12, seed="4")
    assert small.train_images.shape == (12, 1, 8, 12) and small.num_classes == 3 and small.info["seed"] == 4


def test_fake_is_learnable_by_nearest_class_mean() -> None:
    ds = fake(seed=0)
    x_train = ds.train_images.double().flatten(1).numpy()
    x_test = ds.test_images.double().flatten(1).numpy()
    y_train, y_test = ds.train_labels.numpy(), ds.test_labels.numpy()
    centroids = np.stack([x_train[y_train == k].mean(axis=0) for k in range(10)])
    distances = ((x_test[:, None, :] - centroids[None]) ** 2).sum(axis=2)
    accuracy = float((distances.argmin(axis=1) == y_test).mean())
    assert accuracy > 0.9
    # and it is not trivial: the noise is real (images differ within a class)
    assert x_train[y_train == 0].std(axis=0).mean() > 20.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_train": 0}, "option 'n_train' of dataset 'fake' must be at least 1, got 0"),
        ({"num_classes": 1}, "option 'num_classes' of dataset 'fake' must be at least 2"),
        ({"height": "big"}, "option 'height' of dataset 'fake' must be an integer"),
        ({"classes": 3}, "dataset 'fake' has no option 'classes'"),
    ],
)
def test_fake_bad_options(options: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        fake(**options)

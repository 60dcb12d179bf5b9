"""Long-tailed subsets: per-class counts against the LDAM formula, seeds, validation."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from ekd_plugins.datasets.longtail import cifar100_lt

from ekdcli.sdk.contracts import InMemoryDataset
from ekdcli.sdk.data import describe_class_counts
from ekdcli.sdk.longtail import keep_per_class, long_tail_counts, make_long_tailed, subsample_per_class
from ekdcli.util.errors import UsageError

TINY100 = Path(os.environ.get("EKD_SHARED_DATA", "/work/shared/data")) / "tiny_cifar100.npz"


@pytest.fixture(scope="module")
def balanced() -> InMemoryDataset:
    """100 classes x 500 training images; each 1x1x2 image encodes its own index (i % 256, i // 256)."""
    n = 50_000
    index = torch.arange(n)
    images = torch.stack([index % 256, index // 256], dim=1).to(torch.uint8).view(n, 1, 1, 2)
    labels = torch.from_numpy(np.random.default_rng(5).permutation(np.arange(n) % 100))
    return InMemoryDataset(
        name="synthetic",
        train_images=images,
        train_labels=labels,
        test_images=images[:300],
        test_labels=torch.arange(300) % 100,
        class_names=[f"c{i}" for i in range(100)],
        mean=(0.5,),
        std=(0.25,),
        info={"source": "test"},
    )


def _decode(ds: InMemoryDataset) -> torch.Tensor:
    pixels = ds.train_images.view(-1, 2).to(torch.int64)
    return pixels[:, 0] + 256 * pixels[:, 1]


def _expected_exp(n_max: int, factor: float, k: int) -> list[int]:
    return [math.floor(n_max * np.float64(factor) ** (np.float64(c) / (k - 1))) for c in range(k)]


def test_cifar100_lt_counts_500_to_5_total_10847(balanced: InMemoryDataset) -> None:
    lt = make_long_tailed(balanced, 0.01, "exp", seed=0)
    counts = torch.bincount(lt.train_labels, minlength=100).tolist()
    assert counts == _expected_exp(500, 0.01, 100)
    assert counts[0] == 500 and counts[-1] == 5 and sum(counts) == 10_847
    assert lt.info["class_counts"] == counts and lt.info["imbalance_factor"] == 0.01
    assert lt.info["profile"] == "exp" and lt.info["source"] == "test" and lt.name == "synthetic-lt"
    # every kept image is the original image of its index, with its original label, in original order
    original = _decode(lt)
    assert torch.equal(lt.train_labels, balanced.train_labels[original])
    assert bool((original[1:] > original[:-1]).all())
    assert lt.test_images is balanced.test_images and torch.equal(lt.test_labels, balanced.test_labels)


def test_factor_one_half_and_step_profile(balanced: InMemoryDataset) -> None:
    half = make_long_tailed(balanced, 0.5, "exp")
    counts = torch.bincount(half.train_labels, minlength=100).tolist()
    assert counts == _expected_exp(500, 0.5, 100) and counts[0] == 500 and counts[-1] == 250
    assert sum(counts) == 36_029
    step = make_long_tailed(balanced, 0.01, "step")
    assert torch.bincount(step.train_labels, minlength=100).tolist() == [500] * 50 + [5] * 50
    assert make_long_tailed(balanced, 1.0).train_labels.shape[0] == 50_000


def test_seed_determinism(balanced: InMemoryDataset) -> None:
    a = _decode(make_long_tailed(balanced, 0.1, seed=3))
    b = _decode(make_long_tailed(balanced, 0.1, seed=3))
    c = _decode(make_long_tailed(balanced, 0.1, seed=4))
    assert torch.equal(a, b)
    assert a.shape == c.shape and not torch.equal(a, c)


def test_counts_helper_odd_classes_and_cifar10() -> None:
    assert long_tail_counts(5, 10, 0.5, "step") == [10, 10, 5, 5, 5]
    assert long_tail_counts(10, 5000, 0.01) == _expected_exp(5000, 0.01, 10)
    assert sum(long_tail_counts(10, 5000, 0.01)) == 12_406  # the usual CIFAR-10-LT (ratio 100) size


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"imbalance_factor": 0.0}, r"must be in \(0, 1\]"),
        ({"imbalance_factor": 1.5}, r"must be in \(0, 1\]"),
        ({"imbalance_factor": "x"}, "must be a number"),
        ({"profile": "linear"}, "unknown long-tail profile 'linear'; use one of exp, step"),
        ({"imbalance_factor": 0.001}, "at least 0.002"),
        ({"n_max": 600}, "asks for 600; pass n_max of at most 500"),
    ],
)
def test_bad_options(balanced: InMemoryDataset, options: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make_long_tailed(balanced, **options)


@pytest.mark.skipif(not TINY100.exists(), reason="shared tiny CIFAR npz absent")
def test_cifar100_lt_factory_on_tiny_npz() -> None:
    ds = cifar100_lt(str(TINY100), imbalance_factor="0.1", profile="EXP", seed=1)
    base_counts = np.bincount(np.load(TINY100)["y_train"], minlength=100)
    n_max = int(base_counts.min())
    assert ds.name == "cifar100-lt" and ds.info["class_counts"] == _expected_exp(n_max, 0.1, 100)
    assert torch.bincount(ds.train_labels, minlength=100).tolist() == ds.info["class_counts"]
    assert ds.test_images.shape[0] == 200 and ds.mean == (0.5071, 0.4867, 0.4408)


def test_factory_validates_options_before_reading_data(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown long-tail profile 'zipf'"):
        cifar100_lt(str(tmp_path / "missing"), profile="zipf")
    with pytest.raises(UsageError, match="dataset 'cifar100-lt' has no option 'ratio'"):
        cifar100_lt(str(tmp_path), ratio=10)


def test_class_counts_are_described_in_full(balanced: InMemoryDataset) -> None:
    lt = make_long_tailed(balanced, 0.01, "exp", seed=0)
    head, counts = describe_class_counts(lt.name, lt.info).split("\n")
    assert head == (
        "synthetic-lt: 10,847 training images in 100 classes, 500 down to 5 per class "
        "(profile exp, imbalance factor 0.01, seed 0)"
    )
    assert counts == "  class counts: " + " ".join(map(str, _expected_exp(500, 0.01, 100)))
    assert describe_class_counts("cifar100", {"source": "x"}) is None  # balanced data: nothing to say


@pytest.mark.skipif(not TINY100.exists(), reason="shared tiny CIFAR npz absent")
def test_commands_print_the_class_counts(tmp_path: Path, ekd) -> None:
    from ekdcli.jobs.build import build_model

    torch.save({"model": build_model("tiny_cnn", 100, 3).state_dict()}, tmp_path / "tiny.pth")
    code, _, err = ekd("import", "tiny.pth", "--model", "tiny_cnn", "--data", "cifar100-lt")
    assert code == 0, err
    (tmp_path / "lt.toml").write_text("[data_options]\nimbalance_factor = 0.5\nseed = 2\n")
    weights = str(tmp_path / "store" / "models" / "cifar100-lt" / "tiny_cnn.safetensors")
    where = ("--data", "cifar100-lt", "--data-root", str(TINY100), "--config", "lt.toml")
    code, out, err = ekd("evaluate", weights, *where)
    assert code == 0, err
    n_max = int(np.bincount(np.load(TINY100)["y_train"], minlength=100).min())
    expected = _expected_exp(n_max, 0.5, 100)
    assert (
        f"cifar100-lt: {sum(expected):,} training images in 100 classes, {n_max} down to {expected[-1]} "
        "per class (profile exp, imbalance factor 0.5, seed 2)"
    ) in out
    assert "  class counts: " + " ".join(map(str, expected)) + "\n" in out
    code, out, err = ekd("evaluate", weights, *where, "--json")  # --json: stdout stays pure JSON
    assert code == 0 and out.lstrip().startswith("{") and "class counts: " in err


def test_keep_per_class_takes_the_requested_counts_in_order() -> None:
    labels = np.array([2, 0, 1, 0, 2, 1, 0, 2, 0, 1], dtype=np.int64)
    keep = keep_per_class(labels, [3, 1, 2], seed=5)
    assert np.all(np.diff(keep) > 0)
    assert np.bincount(labels[keep], minlength=3).tolist() == [3, 1, 2]
    np.testing.assert_array_equal(keep, keep_per_class(labels, [3, 1, 2], seed=5))
    assert not np.array_equal(
        keep_per_class(labels, [1, 1, 1], seed=5), keep_per_class(labels, [1, 1, 1], seed=6)
    )


def test_subsample_per_class_is_what_a_plugin_builds_a_long_tail_from() -> None:
    from ekdcli.sdk.data import from_arrays

    labels = np.repeat(np.arange(3), 4)
    images = np.arange(12 * 2 * 2, dtype=np.uint8).reshape(12, 2, 2, 1) * 5
    data = from_arrays("toy", images, labels, images[:3], labels[:3], layout="NHWC")
    lt = subsample_per_class(data, [4, 2, 1], seed=0, name="toy-lt", profile="mine", imbalance_factor=0.25)
    assert torch.bincount(lt.train_labels).tolist() == [4, 2, 1] and lt.name == "toy-lt"
    assert lt.info == {
        "base": "toy",
        "profile": "mine",
        "imbalance_factor": 0.25,
        "seed": 0,
        "class_counts": [4, 2, 1],
    }
    kept = lt.train_images[
        :, 0, 0, 0
    ].tolist()  # each kept image is one of its class's, in the original order
    assert kept == sorted(kept) and torch.equal(lt.test_images, data.test_images)
    with pytest.raises(UsageError, match="has 4 training images but the profile asks for 5"):
        subsample_per_class(data, [5, 1, 1], seed=0, name="x")
    with pytest.raises(UsageError, match="leaves the smallest class with 0 of 4 images"):
        subsample_per_class(data, [4, 0, 1], seed=0, name="x", imbalance_factor=0.01)

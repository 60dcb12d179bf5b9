"""digits-lt: Zipf counts against the formula, a seeded subset of the real digits, test split untouched."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch
from ekd_example.longtail import digits_lt, zipf_counts

from ekdcli.sdk.contracts import InMemoryDataset
from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.plugins import registry


@pytest.fixture(scope="module")
def digits() -> InMemoryDataset:
    return registry("datasets").get("digits").build(None)


def zipf_reference(num_classes: int, n_max: int, factor: float) -> list[int]:
    """The same profile written another way: n_c = n_max * factor ** (ln(c + 1) / ln C)."""
    return [
        int(math.floor(n_max * factor ** (math.log(c + 1) / math.log(num_classes)) + 1e-9))
        for c in range(num_classes)
    ]


@pytest.mark.parametrize(
    ("classes", "n_max", "factor"), [(10, 140, 0.1), (10, 500, 0.01), (100, 500, 0.02), (3, 7, 1.0)]
)
def test_zipf_counts_follow_the_power_law(classes: int, n_max: int, factor: float) -> None:
    counts = zipf_counts(classes, n_max, factor)
    assert counts == zipf_reference(classes, n_max, factor)
    assert counts[0] == n_max and counts[-1] == math.floor(n_max * factor + 1e-9)
    assert all(a >= b for a, b in pairwise(counts))


def test_zipf_with_ratio_equal_to_the_class_count_is_the_harmonic_series() -> None:
    # C = 10 and factor 0.1 give exponent exactly 1: n_c = floor(n_max / (c + 1))
    assert zipf_counts(10, 2520, 0.1) == [2520 // (c + 1) for c in range(10)]


def test_zipf_counts_reject_factors_outside_zero_one() -> None:
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(UsageError, match="imbalance_factor must be in \\(0, 1\\]"):
            zipf_counts(10, 100, bad)


def test_digits_lt_is_a_zipf_subset_of_the_digits(digits: InMemoryDataset) -> None:
    lt = digits_lt(imbalance_factor=0.1, seed=3)
    head = int(torch.bincount(digits.train_labels).min())
    expected = zipf_reference(10, head, 0.1)
    assert torch.bincount(lt.train_labels, minlength=10).tolist() == expected == lt.info["class_counts"]
    assert (lt.name, lt.info["profile"], lt.info["imbalance_factor"], lt.info["seed"]) == (
        "digits-lt",
        "zipf",
        0.1,
        3,
    )
    assert (lt.num_classes, lt.in_channels, lt.image_size, lt.hflip) == (10, 1, (32, 32), False)
    # every kept image is a training digit with its own label, kept in the original order
    where = {image.numpy().tobytes(): i for i, image in enumerate(digits.train_images)}
    positions = torch.tensor([where[image.numpy().tobytes()] for image in lt.train_images])
    assert torch.equal(digits.train_labels[positions], lt.train_labels)
    assert bool((positions[1:] > positions[:-1]).all())
    # the test split is the balanced digits test split, untouched
    assert torch.equal(lt.test_images, digits.test_images) and torch.equal(lt.test_labels, digits.test_labels)


def test_the_subset_depends_on_the_seed_only(digits: InMemoryDataset) -> None:
    a, b, c = digits_lt(seed=1), digits_lt(seed=1), digits_lt(seed=2)
    assert torch.equal(a.train_images, b.train_images)
    assert not torch.equal(a.train_images, c.train_images)
    assert a.info["class_counts"] == c.info["class_counts"]


def test_the_core_profiles_are_available(digits: InMemoryDataset) -> None:
    lt = digits_lt(imbalance_factor=0.1, profile="EXP")
    head = int(torch.bincount(digits.train_labels).min())
    expected = [int(math.floor(head * 0.1 ** (c / 9))) for c in range(10)]
    assert torch.bincount(lt.train_labels, minlength=10).tolist() == expected
    step = digits_lt(imbalance_factor=0.5, profile="step")
    assert step.info["class_counts"] == [head] * 5 + [head // 2] * 5


def test_bad_options_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown long-tail profile 'pareto'; use one of zipf, exp, step"):
        digits_lt(profile="pareto")
    with pytest.raises(UsageError, match="dataset 'digits-lt' has no option 'ratio'"):
        digits_lt(ratio=10)
    with pytest.raises(UsageError, match="leaves the smallest class with 0"):
        digits_lt(imbalance_factor=0.001)
    with pytest.raises(UsageError, match="option 'imbalance_factor' of dataset 'digits-lt' must be a number"):
        digits_lt(imbalance_factor="lots")

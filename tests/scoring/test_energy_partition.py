"""Partitions: set sizes against the threshold formula, tie rules, validation, segments, files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ekdcli.method.partition import (
    format_partition,
    load_partition,
    make_partition,
    make_segments,
    per_class_counts,
    save_partition,
    smallest_rate,
)
from ekdcli.store.weights import save_tensors
from ekdcli.util.errors import UsageError


def distinct_energies(n: int, seed: int = 0) -> torch.Tensor:
    """A random permutation of distinct values (exactly representable in float32)."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.randperm(n, generator=gen).float() - n / 2) * 0.5


def reference_sets(e: np.ndarray, low_rate: float, high_rate: float, paper: bool = False):
    """Released rule in float64 numpy: E < sorted[floor(N r)], E > sorted[N - floor(N r) - 1]."""
    n = e.size
    s = np.sort(e.astype(np.float64))
    e_low, e_high = s[math.floor(n * low_rate)], s[n - math.floor(n * high_rate) - 1]
    low = np.flatnonzero(e <= e_low if paper else e < e_low)
    high = np.flatnonzero(e > e_high)
    others = np.setdiff1d(np.arange(n), np.concatenate([low, high]))
    return low, others, high, e_low, e_high


@pytest.mark.parametrize(
    ("n", "rate", "sizes"),
    [(64, 0.2, (12, 40, 12)), (50000, 0.3, (15000, 20000, 15000)), (7, 0.5, (3, 1, 3)), (10, 0.1, (1, 8, 1))],
)
def test_set_sizes_follow_the_released_formula(n: int, rate: float, sizes: tuple[int, int, int]) -> None:
    e = distinct_energies(n)
    part = make_partition(e, rate, rate, score_fingerprint="abc")
    assert (part.low.numel(), part.others.numel(), part.high.numel()) == sizes
    low, others, high, e_low, e_high = reference_sets(e.numpy(), rate, rate)
    np.testing.assert_array_equal(part.low.numpy(), low)
    np.testing.assert_array_equal(part.others.numpy(), others)
    np.testing.assert_array_equal(part.high.numpy(), high)
    assert part.thresholds.low == e_low and part.thresholds.high == e_high
    # The low set is exactly the floor(N r) lowest energies by rank.
    k = math.floor(n * rate)
    assert set(part.low.tolist()) == set(torch.argsort(e)[:k].tolist())
    assert part.n == n and part.score_fingerprint == "abc" and part.low.dtype == torch.int64


def test_paper_rule_adds_the_threshold_sample() -> None:
    e = distinct_energies(64)
    part = make_partition(e, 0.2, 0.2, low_rule="paper")
    assert (part.low.numel(), part.others.numel(), part.high.numel()) == (13, 39, 12)
    low, _, _, _, _ = reference_sets(e.numpy(), 0.2, 0.2, paper=True)
    np.testing.assert_array_equal(part.low.numpy(), low)


def test_ties_at_the_low_threshold_differ_between_rules() -> None:
    # Sorted: 0 1 1 1 2 3 4 5 6 7; N=10, r=0.2 -> E_low = sorted[2] = 1, E_high = sorted[7] = 5.
    e = torch.tensor([3.0, 1.0, 7.0, 1.0, 0.0, 5.0, 1.0, 2.0, 6.0, 4.0])
    released = make_partition(e, 0.2, 0.2)
    paper = make_partition(e, 0.2, 0.2, low_rule="paper")
    assert released.low.tolist() == [4]  # only E=0 is strictly below 1
    assert paper.low.tolist() == [1, 3, 4, 6]  # E <= 1
    assert released.high.tolist() == paper.high.tolist() == [2, 8]  # E > 5
    assert "tied energies" in format_partition(released) and "tied energies" in format_partition(paper)
    assert "tied energies" not in format_partition(make_partition(distinct_energies(10), 0.2, 0.2))


def test_uneven_rates() -> None:
    e = distinct_energies(100)
    part = make_partition(e, 0.1, 0.35)
    assert (part.low.numel(), part.others.numel(), part.high.numel()) == (10, 55, 35)
    full = make_partition(e, 0.4, 0.6)  # rates summing to 1 leave nothing in between
    assert full.others.numel() == 0 and full.low.numel() + full.high.numel() == 100


def test_rate_too_small_names_the_smallest_rate_that_works() -> None:
    e = distinct_energies(64)
    with pytest.raises(UsageError) as err:
        make_partition(e, 0.01, 0.01)
    assert "too small for 64 samples" in err.value.message and "at least 0.016" in err.value.message
    assert make_partition(e, 0.016, 0.016).low.numel() == 1  # the suggestion works
    with pytest.raises(UsageError, match="high rate 0.001 is too small for 64 samples"):
        make_partition(e, 0.2, 0.001)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=2, max_value=10_000_000))
def test_smallest_rate_is_small_and_non_empty(n: int) -> None:
    r = smallest_rate(n)
    assert math.floor(n * r) >= 1
    assert r <= 1.1 / n + 1e-12  # within 10% of 1/N
    assert r < 1


@pytest.mark.parametrize(
    ("low", "high", "message"),
    [
        (0.6, 0.6, r"rate must be in \(0, 0.5\]"),
        (0.0, 0.2, r"low rate must be in \(0, 1\)"),
        (0.2, 1.0, r"high rate must be in \(0, 1\)"),
        (0.7, 0.4, "at most 1"),
    ],
)
def test_invalid_rates_are_refused(low: float, high: float, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make_partition(distinct_energies(100), low, high)


def test_other_bad_inputs() -> None:
    with pytest.raises(UsageError, match="overlap"):
        make_partition(distinct_energies(10), 0.5, 0.5, low_rule="paper")
    with pytest.raises(UsageError, match="unknown low-energy rule 'papers'"):
        make_partition(distinct_energies(10), 0.2, 0.2, low_rule="papers")
    with pytest.raises(UsageError, match="1 energies are not finite"):
        make_partition(torch.tensor([0.0, 1.0, float("nan"), 3.0]), 0.25, 0.25)
    with pytest.raises(UsageError, match="at least 2 scored samples"):
        make_partition(torch.tensor([1.0]), 0.5, 0.5)


def test_segments_are_equal_count_by_rank() -> None:
    e = distinct_energies(100, seed=3)
    part = make_segments(e, 10, score_fingerprint="fp")
    rank = torch.empty(100, dtype=torch.int64)
    rank[torch.argsort(e)] = torch.arange(100)
    assert torch.equal(part.segments, rank // 10)
    assert torch.equal(part.low, torch.nonzero(rank < 10).flatten())
    assert torch.equal(part.high, torch.nonzero(rank >= 90).flatten())
    assert part.others.numel() == 80 and part.thresholds is None and part.n_segments == 10
    np.testing.assert_array_equal(part.segment_edges.numpy(), np.sort(e.numpy())[10:100:10])
    uneven = make_segments(distinct_energies(7), 3)  # edges at sorted[2], sorted[4]: sizes 2, 2, 3
    assert torch.bincount(uneven.segments).tolist() == [2, 2, 3]
    for bad in (1, 101, 2.5):
        with pytest.raises(UsageError, match="from 2 to 100"):
            make_segments(e, bad)


def test_partition_files_round_trip(tmp_path) -> None:
    e = distinct_energies(64)
    part = make_partition(e, 0.2, 0.3, low_rule="paper", score_fingerprint="0123abcd")
    path = save_partition(tmp_path / "p.safetensors", part, {"teacher": "wrn40_2"})
    back = load_partition(path)
    for name in ("low", "others", "high"):
        assert torch.equal(back.group(name), part.group(name))
    assert back.thresholds == part.thresholds and back.thresholds.low_rule == "paper"
    assert back.score_fingerprint == "0123abcd" and back.n == 64 and back.extra == {"teacher": "wrn40_2"}
    assert back.segments is None

    seg = make_segments(e, 4, score_fingerprint="0123abcd")
    back = load_partition(save_partition(tmp_path / "s.safetensors", seg))
    assert torch.equal(back.segments, seg.segments) and torch.equal(back.segment_edges, seg.segment_edges)
    assert back.thresholds is None and back.n_segments == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.safetensors", "s.safetensors"]


def test_bad_partition_files(tmp_path) -> None:
    with pytest.raises(UsageError, match="no partition file at .*ekd partition --rate"):
        load_partition(tmp_path / "missing.safetensors")
    other = save_tensors(tmp_path / "w.safetensors", {"fc.weight": torch.zeros(1)})
    with pytest.raises(UsageError, match="is not an ekd partition file"):
        load_partition(other)
    part = make_partition(distinct_energies(20), 0.2, 0.2)
    part.others = part.others[1:]  # a sample lost: sets no longer cover range(n)
    with pytest.raises(UsageError, match="damaged partition file"):
        load_partition(save_partition(tmp_path / "bad.safetensors", part))


def test_per_class_counts_and_table() -> None:
    e = distinct_energies(60, seed=5)
    labels = torch.arange(60) % 4
    labels[labels == 3] = 2  # class 3 is empty: long-tailed shapes must not break the table
    part = make_partition(e, 0.2, 0.2)
    counts = per_class_counts(part, labels, 4)
    y = labels.numpy()
    for name in ("low", "others", "high"):
        expected = [int(np.sum(y[part.group(name).numpy()] == c)) for c in range(4)]
        assert counts[name] == expected
    assert counts["total"] == [15, 15, 30, 0]
    text = format_partition(part, labels, ["apple", "bee", "cat", "dog"])
    assert "score fingerprint -" in text and "E < " in text and "released rule" in text
    cat_row = next(line for line in text.splitlines() if line.startswith("cat"))
    assert cat_row.split()[1:5] == [
        str(v) for v in (30, counts["low"][2], counts["others"][2], counts["high"][2])
    ]
    dog_row = next(line for line in text.splitlines() if line.startswith("dog"))
    assert dog_row.split() == ["dog", "0", "0", "0", "0", "-", "-"]
    with pytest.raises(UsageError, match="59 labels for a partition of 60"):
        per_class_counts(part, labels[:59], 4)
    seg_text = format_partition(make_segments(e, 3))
    assert "3 segments, sizes [20, 20, 20]" in seg_text and "first segment" in seg_text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_give_the_same_sets_and_scores() -> None:
    from ekdcli.method.scoring import score_from_logits

    logits = torch.randn(200, 10, generator=torch.Generator().manual_seed(0)) * 4
    labels = torch.arange(200) % 10
    cpu = score_from_logits(logits, labels, 4.0)
    gpu = score_from_logits(logits.cuda(), labels.cuda(), 4.0)
    assert gpu.energies.device.type == "cpu"
    torch.testing.assert_close(gpu.energies, cpu.energies)
    a, b = make_partition(cpu.energies, 0.2, 0.2), make_partition(cpu.energies.cuda(), 0.2, 0.2)
    assert all(torch.equal(a.group(g), b.group(g)) for g in ("low", "others", "high"))
    assert torch.equal(
        make_segments(cpu.energies.cuda(), 5).segments, make_segments(cpu.energies, 5).segments
    )

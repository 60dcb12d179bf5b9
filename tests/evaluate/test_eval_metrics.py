"""ekdcli.method.metrics against values computed by hand (and by plain float64 loops) in the test."""

from __future__ import annotations

import math

import pytest
import torch

from ekdcli.method.metrics import (
    calibration_bins,
    classification_metrics,
    expected_calibration_error,
    index_group_accuracy,
    long_tail_accuracy,
    long_tail_membership,
    nll,
    per_class_accuracy,
    topk_accuracy,
)
from ekdcli.util.errors import UsageError

# 4 samples, 6 classes, no ties. Ranks of the true class: 1st, 3rd, 6th, 2nd.
LOGITS = torch.tensor(
    [
        [5.0, 1.0, 0.0, -1.0, -2.0, -3.0],  # label 0: rank 1
        [0.0, 3.0, 2.0, 1.0, -1.0, -2.0],  # label 3: rank 3 (3, 2, 1)
        [4.0, 3.0, 2.0, 1.0, 0.0, -1.0],  # label 5: rank 6
        [1.0, 2.0, 0.5, 0.0, -0.5, -1.0],  # label 0: rank 2
    ],
    dtype=torch.float32,
)
LABELS = torch.tensor([0, 3, 5, 0])


def _binary_logits(probabilities: list[float], predicted: list[int]) -> torch.Tensor:
    """Two-class logits whose softmax gives ``p`` to class ``predicted`` (p > 0.5)."""
    rows = []
    for p, c in zip(probabilities, predicted, strict=True):
        margin = math.log(p / (1 - p))
        rows.append([margin, 0.0] if c == 0 else [0.0, margin])
    return torch.tensor(rows, dtype=torch.float32)


def test_topk_accuracy_by_hand() -> None:
    top = topk_accuracy(LOGITS, LABELS, ks=(1, 2, 3, 5, 6))
    assert top[1] == pytest.approx(0.25)  # only sample 0
    assert top[2] == pytest.approx(0.50)  # + sample 3
    assert top[3] == pytest.approx(0.75)  # + sample 1
    assert top[5] == pytest.approx(0.75)  # sample 2 is ranked last
    assert top[6] == pytest.approx(1.0)


def test_topk_beyond_the_number_of_classes_counts_everything() -> None:
    logits = torch.tensor([[0.0, 1.0], [2.0, 1.0]])
    labels = torch.tensor([0, 1])
    assert topk_accuracy(logits, labels, (1, 5)) == {1: 0.0, 5: 1.0}


def test_nll_matches_log_softmax_by_hand() -> None:
    expected = 0.0
    for row, label in zip(LOGITS.tolist(), LABELS.tolist(), strict=True):
        log_z = math.log(sum(math.exp(v) for v in row))
        expected += -(row[label] - log_z)
    expected /= len(LABELS)
    assert nll(LOGITS, LABELS) == pytest.approx(expected, rel=1e-9)


def test_ece_hand_computed_case() -> None:
    # confidences 0.9 (right), 0.9 (wrong), 0.95 (right), 0.55 (wrong); 15 bins of width 1/15:
    #   0.9  -> bin (13/15, 14/15] = (0.8667, 0.9333]: 2 samples, acc 0.5, conf 0.9 -> 2/4 * 0.4  = 0.2
    #   0.95 -> bin (14/15, 1]:                         1 sample,  acc 1,   conf 0.95 -> 1/4 * 0.05 = 0.0125
    #   0.55 -> bin (8/15, 9/15] = (0.5333, 0.6]:      1 sample,  acc 0,   conf 0.55 -> 1/4 * 0.55 = 0.1375
    logits = _binary_logits([0.9, 0.9, 0.95, 0.55], [0, 1, 0, 1])
    labels = torch.tensor([0, 0, 0, 0])
    assert expected_calibration_error(logits, labels) == pytest.approx(0.35, abs=1e-6)
    bins = calibration_bins(logits, labels)
    assert bins["count"].tolist() == [0.0] * 8 + [1.0] + [0.0] * 4 + [2.0, 1.0]
    assert bins["accuracy"][13].item() == pytest.approx(0.5)
    assert bins["confidence"][14].item() == pytest.approx(0.95, abs=1e-6)


def test_ece_of_a_perfectly_confident_right_model_is_zero_and_certainty_falls_in_the_last_bin() -> None:
    logits = torch.tensor([[100.0, 0.0, 0.0], [0.0, 0.0, 100.0]])
    labels = torch.tensor([0, 2])
    assert expected_calibration_error(logits, labels) == pytest.approx(0.0, abs=1e-12)
    assert calibration_bins(logits, labels)["count"][-1].item() == 2.0


def test_ece_matches_a_plain_loop_on_random_logits() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(300, 7, generator=gen) * 3
    labels = torch.randint(0, 7, (300,), generator=gen)
    probs = torch.softmax(logits.double(), dim=1).tolist()
    n_bins, total = 15, 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [
            (max(p), int(p.index(max(p)) == y))
            for p, y in zip(probs, labels.tolist(), strict=True)
            if lo < max(p) <= hi
        ]
        if members:
            conf = sum(c for c, _ in members) / len(members)
            acc = sum(a for _, a in members) / len(members)
            total += len(members) / 300 * abs(acc - conf)
    assert expected_calibration_error(logits, labels) == pytest.approx(total, abs=1e-9)


def test_per_class_accuracy_with_an_absent_class() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    labels = torch.tensor([0, 0, 0, 2])  # class 1 has no samples
    acc = per_class_accuracy(logits, labels)
    assert acc[0] == pytest.approx(2.0 / 3)
    assert acc[1] is None
    assert acc[2] == pytest.approx(1.0)


def test_long_tail_boundaries_are_100_and_20_inclusive_medium() -> None:
    counts = [101, 100, 20, 19, 500, 0]
    assert long_tail_membership(counts) == {"many": [0, 4], "medium": [1, 2], "few": [3, 5]}


def test_long_tail_accuracy_counts_samples_of_each_group() -> None:
    counts = [150, 100, 20, 5]
    # predictions: argmax of each row; many = {0}, medium = {1, 2}, few = {3}
    logits = torch.eye(4)[[0, 1, 1, 3, 0, 0]] * 5
    labels = torch.tensor([0, 1, 2, 3, 3, 0])
    lt = long_tail_accuracy(logits, labels, counts)
    assert lt["many"] == {"classes": 1, "samples": 2, "accuracy": pytest.approx(1.0)}
    assert lt["medium"] == {"classes": 2, "samples": 2, "accuracy": pytest.approx(0.50)}
    assert lt["few"] == {"classes": 1, "samples": 2, "accuracy": pytest.approx(0.50)}


def test_long_tail_group_without_samples_has_no_accuracy() -> None:
    lt = long_tail_accuracy(torch.eye(2) * 3, torch.tensor([0, 1]), [200, 150])
    assert lt["few"] == {"classes": 0, "samples": 0, "accuracy": None}


def test_index_group_accuracy_low_others_high() -> None:
    predictions = torch.tensor([0, 1, 1, 0, 2, 2, 1, 0])
    labels = torch.tensor([0, 1, 0, 0, 2, 1, 1, 1])  # correct at 0, 1, 3, 4, 6
    logits = torch.nn.functional.one_hot(predictions, 3).float()
    groups = {"low": torch.tensor([0, 1]), "others": torch.tensor([2, 3, 4, 5]), "high": torch.tensor([6, 7])}
    out = index_group_accuracy(logits, labels, groups)
    assert out["low"] == {"count": 2, "accuracy": pytest.approx(1.0)}
    assert out["others"] == {"count": 4, "accuracy": pytest.approx(0.50)}
    assert out["high"] == {"count": 2, "accuracy": pytest.approx(0.50)}
    assert index_group_accuracy(logits, labels, {"none": torch.tensor([], dtype=torch.long)})["none"] == {
        "count": 0,
        "accuracy": None,
    }
    with pytest.raises(UsageError, match="outside 0..7"):
        index_group_accuracy(logits, labels, {"bad": torch.tensor([8])})


def test_classification_metrics_bundle_and_bad_input() -> None:
    out = classification_metrics(LOGITS, LABELS)
    assert out["n"] == 4
    assert out["top1"] == pytest.approx(0.25) and out["top5"] == pytest.approx(0.75)
    assert len(out["per_class_accuracy"]) == 6
    with pytest.raises(UsageError, match="4 rows of logits but 3 labels"):
        nll(LOGITS, LABELS[:3])
    with pytest.raises(UsageError, match=r"labels must lie in \[0, 6\)"):
        topk_accuracy(LOGITS, torch.tensor([0, 1, 2, 6]))
    with pytest.raises(UsageError, match="non-empty"):
        expected_calibration_error(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(UsageError, match="training counts for 2 classes"):
        long_tail_accuracy(LOGITS, LABELS, [10, 10])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_metrics_on_cuda_match_cpu() -> None:
    cpu = classification_metrics(LOGITS, LABELS)
    gpu = classification_metrics(LOGITS.cuda(), LABELS.cuda())
    for key in ("top1", "top5", "nll", "ece"):
        assert gpu[key] == pytest.approx(cpu[key], rel=1e-9)

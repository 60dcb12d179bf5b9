"""Score tables: energies against an independent float64 formula, files, fingerprints, summary."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ekdcli.method.scoring import (
    ScoreMeta,
    average_ranks,
    check_compatible,
    format_summary,
    load_scores,
    save_scores,
    score_from_logits,
    spearman,
    summarize,
)
from ekdcli.sdk.contracts import labels_fingerprint
from ekdcli.store.weights import save_tensors, weights_sha256
from ekdcli.util.errors import UsageError


def ref_energy(logits: np.ndarray, t: float) -> np.ndarray:
    """-T * logsumexp(z / T) in float64 with an explicit max shift."""
    z = logits.astype(np.float64) / t
    m = z.max(axis=1, keepdims=True)
    return -t * (m[:, 0] + np.log(np.exp(z - m).sum(axis=1)))


def ref_confidence(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)).max(axis=1)


@pytest.mark.parametrize("t", [1.0, 4.0, 0.5])
def test_energies_and_confidence_match_float64_reference(t: float) -> None:
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((40, 7)) * 5).astype(np.float32)
    labels = rng.integers(0, 7, 40)
    table = score_from_logits(torch.from_numpy(logits), torch.from_numpy(labels), t)
    np.testing.assert_allclose(table.energies.numpy(), ref_energy(logits, t), rtol=1e-5)
    np.testing.assert_allclose(table.confidence.numpy(), ref_confidence(logits), rtol=1e-5)
    np.testing.assert_array_equal(table.predictions.numpy(), logits.argmax(axis=1))
    assert table.energies.dtype == torch.float32 and table.confidence.dtype == torch.float32
    assert table.labels.dtype == torch.int64 and table.predictions.dtype == torch.int64
    assert table.meta.energy_temperature == t


def test_extreme_logits_give_finite_exact_energies() -> None:
    logits = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 1e4], [-1e4, -1e4, -1e4], [3e4, 2e4, 1e4]], np.float32)
    table = score_from_logits(torch.from_numpy(logits), [0, 1, 2, 0], 4.0)
    assert torch.isfinite(table.energies).all()
    np.testing.assert_allclose(table.energies.numpy(), ref_energy(logits, 4.0), rtol=1e-5)
    # By hand: all-equal rows give -(z + T log K).
    assert table.energies[1].item() == pytest.approx(-(1e4 + 4 * math.log(3)), rel=1e-6)


def test_half_precision_logits_are_scored_in_float32() -> None:
    logits = torch.tensor([[300.0, 0.0, -5.0], [1.0, 2.0, 3.0]], dtype=torch.bfloat16)
    table = score_from_logits(logits, [0, 2], 4.0)
    np.testing.assert_allclose(table.energies.numpy(), ref_energy(logits.float().numpy(), 4.0), rtol=1e-5)


def test_bad_inputs_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="3 rows of logits but 2 labels"):
        score_from_logits(torch.zeros(3, 4), [0, 1], 4.0)
    with pytest.raises(UsageError, match=r"\[N, K\] tensor"):
        score_from_logits(torch.zeros(5), [0] * 5, 4.0)
    with pytest.raises(UsageError, match="positive number"):
        score_from_logits(torch.zeros(2, 4), [0, 1], 0.0)


def make_table(n: int = 30, k: int = 5, keep_logits: bool | None = None, **meta: str):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(n, k, generator=gen) * 3
    labels = torch.randint(0, k, (n,), generator=gen)
    fields = {"teacher": "wrn40_2", "teacher_sha256": "a" * 64, "dataset": "cifar100", **meta}
    return score_from_logits(logits, labels, 4.0, extra={"split": "train"}, keep_logits=keep_logits, **fields)


def test_dataset_fingerprint_defaults_to_the_labels_fingerprint() -> None:
    table = make_table()
    assert table.meta.dataset_fingerprint == labels_fingerprint(table.labels.tolist())
    assert table.meta.dataset_fingerprint.startswith("30:")


def test_fingerprint_changes_with_teacher_dataset_and_temperature() -> None:
    base = dict(teacher="t", teacher_sha256="a" * 64, dataset="d", dataset_fingerprint="30:x")
    meta = ScoreMeta(**base, energy_temperature=4.0, created="", ekd_version="", extra={})
    same = ScoreMeta(**{**base, "teacher": "renamed"}, energy_temperature=4.0, created="x", ekd_version="y")
    assert meta.fingerprint == same.fingerprint and len(meta.fingerprint) == 16
    others = [
        ScoreMeta(**{**base, "teacher_sha256": "b" * 64}, energy_temperature=4.0, created="", ekd_version=""),
        ScoreMeta(
            **{**base, "dataset_fingerprint": "31:x"}, energy_temperature=4.0, created="", ekd_version=""
        ),
        ScoreMeta(**base, energy_temperature=2.0, created="", ekd_version=""),
    ]
    assert len({meta.fingerprint, *(o.fingerprint for o in others)}) == 4


@pytest.mark.parametrize("keep", [True, False])
def test_save_load_round_trip(tmp_path, keep: bool) -> None:
    table = make_table(keep_logits=keep)
    path = save_scores(tmp_path / "scores" / "wrn40_2.safetensors", table)
    back = load_scores(path)
    for key in ("energies", "labels", "predictions", "confidence"):
        assert torch.equal(getattr(back, key), getattr(table, key)), key
    assert (back.logits is not None) == keep
    if keep:
        assert torch.equal(back.logits, table.logits)
    assert back.meta == table.meta
    assert back.fingerprint == table.fingerprint
    assert list(tmp_path.joinpath("scores").iterdir()) == [path]  # no temp file left behind


def test_logits_are_kept_by_default_only_when_small(monkeypatch) -> None:
    assert make_table().logits is not None
    monkeypatch.setattr("ekdcli.method.scoring.KEEP_LOGITS_MAX_VALUES", 10)
    assert make_table().logits is None


def test_missing_score_file_names_the_command_that_makes_it(tmp_path) -> None:
    with pytest.raises(UsageError) as err:
        load_scores(tmp_path / "nope.safetensors", teacher="wrn40_2", data="cifar100")
    assert "no score file at" in err.value.message
    assert "`ekd score --teacher wrn40_2 --data cifar100`" in err.value.message
    assert err.value.exit_code == 2


def test_other_files_are_not_score_files(tmp_path) -> None:
    weights = tmp_path / "model.safetensors"
    save_tensors(weights, {"fc.weight": torch.zeros(2, 2)}, {"arch": "resnet8"})
    with pytest.raises(UsageError, match="is not an ekd score file"):
        load_scores(weights)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(UsageError, match="is not an ekd score file"):
        load_scores(garbage)


def test_check_compatible_refuses_other_teacher_or_dataset() -> None:
    table = make_table()
    check_compatible(table, "a" * 64, table.meta.dataset_fingerprint, 4.0)  # same: accepted
    check_compatible(table)  # nothing to compare: accepted
    with pytest.raises(UsageError) as err:
        check_compatible(table, teacher_sha256="b" * 64)
    msg = err.value.message
    assert "b" * 64 in msg and "a" * 64 in msg and msg.index("b" * 64) < msg.index("a" * 64)
    assert "ekd score --teacher wrn40_2 --data cifar100 --force" in msg
    with pytest.raises(UsageError) as err:
        check_compatible(table, dataset_fingerprint="50000:0123456789abcdef")
    assert (
        "50000:0123456789abcdef" in err.value.message and table.meta.dataset_fingerprint in err.value.message
    )
    with pytest.raises(UsageError, match="energy temperature: expected 2.0, found 4.0"):
        check_compatible(table, energy_temperature=2.0)


def test_weights_sha256_is_stable_across_order_files_and_modules(tmp_path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    state = model.state_dict()
    digest = weights_sha256(state)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert weights_sha256(dict(reversed(list(state.items())))) == digest
    assert weights_sha256(model) == digest
    path = save_tensors(tmp_path / "m.safetensors", state, {"arch": "x"})
    assert weights_sha256(path) == digest
    assert weights_sha256(str(path)) == digest
    changed = {k: v.clone() for k, v in state.items()}
    changed["0.bias"][0] += 1e-6
    assert weights_sha256(changed) != digest
    # Same bytes under another shape or dtype are other weights.
    assert weights_sha256({"w": torch.zeros(2, 3)}) != weights_sha256({"w": torch.zeros(3, 2)})
    assert weights_sha256({"w": torch.zeros(4, dtype=torch.int32)}) != weights_sha256({"w": torch.zeros(4)})
    assert len(weights_sha256({"w": torch.ones(3, dtype=torch.bfloat16), "s": torch.tensor(1.0)})) == 64
    with pytest.raises(UsageError, match="not a tensor"):
        weights_sha256({"w": [1, 2]})


def test_average_ranks_and_spearman_by_hand() -> None:
    assert average_ranks(torch.tensor([10.0, 20.0, 20.0, 5.0])).tolist() == [2.0, 3.5, 3.5, 1.0]
    # Hand example with a tie: ranks b = 1, 2, 3.5, 5, 3.5 -> rho = 8 / sqrt(10 * 9.5).
    a = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    b = torch.tensor([5.0, 6.0, 7.0, 8.0, 7.0])
    assert spearman(a, b) == pytest.approx(8 / math.sqrt(95), rel=1e-12)
    # No ties: 1 - 6 sum d^2 / (n (n^2 - 1)) = 1 - 24 / 120.
    assert spearman(a, torch.tensor([2.0, 1.0, 4.0, 3.0, 5.0])) == pytest.approx(0.8, rel=1e-12)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert math.isnan(spearman(a, torch.ones(5)))


def test_summary_low_energy_set_is_confident_and_high_set_is_not() -> None:
    n, k = 50, 10
    labels = torch.arange(n) % k
    scale = torch.linspace(0.2, 12.0, n)  # larger margin: more confident, lower energy
    logits = torch.zeros(n, k)
    logits[torch.arange(n), labels] = scale
    # The 5 least confident put their peak on another class: same energies, wrong predictions.
    wrong = torch.arange(5)
    logits[wrong, labels[wrong]] = 0.0
    logits[wrong, (labels[wrong] + 1) % k] = scale[wrong]
    table = score_from_logits(logits, labels, 4.0)
    s = summarize(table, rate=0.2)
    assert s["n"] == 50 and s["low"]["count"] == 10 and s["high"]["count"] == 10
    assert s["low"]["mean_confidence"] > s["high"]["mean_confidence"]
    assert s["low"]["accuracy"] == 1.0 and s["high"]["accuracy"] == 0.5
    assert s["accuracy"] == pytest.approx(45 / 50)
    assert s["spearman_energy_confidence"] == pytest.approx(-1.0)  # strictly monotone
    e64 = table.energies.double().numpy()
    for name, q in (("q05", 0.05), ("q25", 0.25), ("median", 0.5), ("q75", 0.75), ("q95", 0.95)):
        assert s["energy"][name] == pytest.approx(np.quantile(e64, q), rel=1e-9)
    assert s["energy"]["min"] == pytest.approx(e64.min()) and s["energy"]["mean"] == pytest.approx(e64.mean())
    assert s["thresholds"]["low"] == pytest.approx(np.sort(e64)[10]) and s["thresholds"]["low_rate"] == 0.2
    assert s["thresholds"]["high"] == pytest.approx(np.sort(e64)[50 - 10 - 1])
    text = format_summary(s)
    assert "lowest 20% (certain)" in text and "highest 20% (uncertain)" in text
    assert "teacher accuracy   90.00%" in text and "spearman(energy, confidence) -" in text
    header, values = [line for line in text.splitlines() if line.startswith(("energy   ", "         "))][:2]
    assert len(header) == len(values)  # aligned columns
    with pytest.raises(UsageError, match=r"\(0, 0.5\]"):
        summarize(table, rate=0.7)


def test_summary_of_constant_confidence_is_json_safe() -> None:
    table = score_from_logits(torch.zeros(6, 3), [0, 1, 2, 0, 1, 2], 4.0)
    s = summarize(table, rate=0.5)
    assert s["spearman_energy_confidence"] is None and s["low"]["count"] == 3
    json.loads(json.dumps(s, allow_nan=False))
    assert "spearman(energy, confidence) n/a" in format_summary(s)

"""`ekd score` and `ekd partition` end to end on small data: files read back, reuse, bad input.

The teacher is a seeded, untrained resnet8 written straight into the store (scoring needs weights,
not a good teacher), so these tests stay fast; energies, sets and thresholds are re-derived here in
float64 numpy from the file's own logits and energies.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import ekdcli
from ekdcli.jobs.build import build_model
from ekdcli.method.partition import load_partition
from ekdcli.method.scoring import load_scores
from ekdcli.store.weights import load_tensors, save_tensors, weights_sha256

CONFIG = """
data = "fake"
teacher = "resnet8"

[data_options]
n_train = 160
n_test = 32
num_classes = 5
seed = 7
"""
DATA_KEY = "fake-n_test32-n_train160-num_classes5-seed7"
N = 160


def write_teacher(path: Path, data_key: str, num_classes: int, seed: int, arch: str = "resnet8") -> Path:
    torch.manual_seed(seed)
    model = build_model(arch, num_classes, 3)
    meta = {"format": "ekd-weights", "arch": arch, "dataset": data_key, "num_classes": num_classes}
    save_tensors(path, {k: v.detach().clone() for k, v in model.state_dict().items()}, meta)
    return path


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "ekd.toml").write_text(f'store = "{tmp_path / "store"}"\n' + CONFIG)
    write_teacher(tmp_path / "store" / "models" / DATA_KEY / "resnet8.safetensors", DATA_KEY, 5, 0)
    return tmp_path


def score_file(ws: Path) -> Path:
    return ws / "store" / "scores" / DATA_KEY / "resnet8.safetensors"


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def ref_thresholds(e: np.ndarray, low_rate: float, high_rate: float) -> tuple[float, float]:
    s = np.sort(e.astype(np.float64))
    n = s.size
    return float(s[math.floor(n * low_rate)]), float(s[n - math.floor(n * high_rate) - 1])


def test_score_file_metadata_summary_and_histogram(ws: Path, ekd: Any) -> None:
    code, out, err = ekd("score", "--save-logits", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert Path(result["scores"]) == score_file(ws) and result["computed"] is True
    tensors, meta = load_tensors(score_file(ws))
    table = load_scores(score_file(ws))
    # metadata: teacher and its weights' hash, dataset and its fingerprint, T_E, date, version
    teacher_path = ws / "store" / "models" / DATA_KEY / "resnet8.safetensors"
    assert meta["teacher"] == "resnet8" and meta["teacher_sha256"] == weights_sha256(teacher_path)
    assert len(meta["teacher_sha256"]) == 64
    labels = tensors["labels"].tolist()
    digest = hashlib.sha256(",".join(str(y) for y in labels).encode()).hexdigest()[:16]
    assert meta["dataset"] == DATA_KEY and meta["dataset_fingerprint"] == f"{N}:{digest}"
    assert float(meta["energy_temperature"]) == 4.0 and meta["ekd_version"] == ekdcli.__version__
    created = datetime.fromisoformat(meta["created"])
    assert abs((datetime.now(timezone.utc) - created).total_seconds()) < 3600
    # columns against float64 re-derivations from the stored logits
    z = tensors["logits"].double().numpy()
    assert z.shape == (N, 5) and tensors["energies"].dtype == torch.float32
    m = (z / 4.0).max(axis=1, keepdims=True)
    energy = -4.0 * (m[:, 0] + np.log(np.exp(z / 4.0 - m).sum(axis=1)))
    np.testing.assert_allclose(tensors["energies"].double().numpy(), energy, rtol=1e-5)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(tensors["confidence"].double().numpy(), p.max(axis=1), rtol=1e-5)
    np.testing.assert_array_equal(tensors["predictions"].numpy(), z.argmax(axis=1))
    # summary: counts, quantiles, accuracy and group means from the file, in float64
    s = result["summary"]
    e = table.energies.double().numpy()
    k = math.floor(N * 0.2)
    order = np.argsort(e, kind="stable")
    conf = table.confidence.double().numpy()
    assert s["n"] == N and s["low"]["count"] == s["high"]["count"] == k
    assert s["low"]["mean_confidence"] == pytest.approx(conf[order[:k]].mean())
    assert s["high"]["mean_confidence"] == pytest.approx(conf[order[-k:]].mean())
    assert s["accuracy"] == pytest.approx(float(np.mean(z.argmax(axis=1) == np.array(labels))))
    assert s["energy"]["median"] == pytest.approx(np.quantile(e, 0.5))
    assert (s["energy"]["min"], s["energy"]["max"]) == (pytest.approx(e.min()), pytest.approx(e.max()))
    low, high = ref_thresholds(e, 0.2, 0.2)
    assert s["thresholds"]["low"] == pytest.approx(low) and s["thresholds"]["high"] == pytest.approx(high)
    assert -1.0 <= s["spearman_energy_confidence"] <= 1.0
    histogram = Path(result["histogram"])
    assert histogram == score_file(ws).with_suffix(".png")
    assert histogram.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and histogram.stat().st_size > 5000


def test_score_reuses_a_matching_file_unless_forced(ws: Path, ekd: Any) -> None:
    assert ekd("score", "--no-save-logits", "--quiet")[0] == 0
    first = score_file(ws).read_bytes()
    assert "logits" not in load_tensors(score_file(ws))[0]
    code, out, err = ekd("score")
    assert code == 0 and "reusing" in out + err
    assert score_file(ws).read_bytes() == first  # not rewritten
    code, out, _ = ekd("score", "--force", "--no-save-logits", "--json")
    assert code == 0 and json.loads(out)["computed"] is True
    # asking for logits that the stored file lacks scores again instead of ignoring the flag
    code, out, _ = ekd("score", "--save-logits", "--json")
    assert code == 0 and json.loads(out)["computed"] is True
    assert load_tensors(score_file(ws))[0]["logits"].shape == (N, 5)
    code, out, _ = ekd("score", "--save-logits", "--json")
    assert code == 0 and json.loads(out)["computed"] is False
    # another energy temperature: refused with the command that rescores, which then works
    code, _, err = ekd("score", "--energy-temperature", "2")
    assert code == 2 and "expected 2.0, found 4.0" in err
    assert "`ekd score --teacher resnet8 --data fake --force --energy-temperature 2`" in err
    assert ekd("score", "--force", "--energy-temperature", "2", "--quiet")[0] == 0
    tensors, meta = load_tensors(score_file(ws))
    z = tensors["logits"].double()
    assert float(meta["energy_temperature"]) == 2.0
    torch.testing.assert_close(
        tensors["energies"].double(), -2.0 * torch.logsumexp(z / 2.0, 1), rtol=1e-5, atol=0
    )


def test_score_of_other_teacher_weights_is_refused_showing_both(ws: Path, ekd: Any) -> None:
    assert ekd("score", "--quiet")[0] == 0
    old = load_scores(score_file(ws)).meta.teacher_sha256
    teacher = write_teacher(ws / "store" / "models" / DATA_KEY / "resnet8.safetensors", DATA_KEY, 5, 1)
    new = weights_sha256(teacher)
    before = files_under(ws / "store")
    for args in (["score"], ["distill", "--method", "energy_kd", "--student", "tiny_cnn", "--epochs", "1"]):
        code, out, err = ekd(*args)
        assert code == 2, (out, err)
        assert err.startswith("error: ") and "Traceback" not in err
        assert new in err and old in err and "`ekd score --teacher resnet8 --data fake --force`" in err
    assert files_under(ws / "store") == before


def test_partition_sets_files_and_figures(ws: Path, ekd: Any) -> None:
    assert ekd("score", "--save-logits", "--quiet")[0] == 0
    e = load_scores(score_file(ws)).energies.double().numpy()
    for args, (low_rate, high_rate) in (
        (["--rate", "0.25"], (0.25, 0.25)),
        (["--low-rate", "0.1", "--high-rate", "0.3"], (0.1, 0.3)),
    ):
        code, out, err = ekd("partition", *args, "--json")
        assert code == 0, err
        result = json.loads(out)
        e_low, e_high = ref_thresholds(e, low_rate, high_rate)
        low, high = np.flatnonzero(e < e_low), np.flatnonzero(e > e_high)
        assert len(low) == math.floor(N * low_rate) and len(high) == math.floor(N * high_rate)  # no ties
        assert result["counts"] == {"low": len(low), "others": N - len(low) - len(high), "high": len(high)}
        assert result["thresholds"]["low"] == pytest.approx(e_low)
        assert result["thresholds"]["high"] == pytest.approx(e_high)
        part = load_partition(result["files"]["partition"])
        np.testing.assert_array_equal(part.low.numpy(), low)
        np.testing.assert_array_equal(part.high.numpy(), high)
        assert (
            part.score_fingerprint == result["score_fingerprint"] == load_scores(score_file(ws)).fingerprint
        )
        for key in ("grid", "average_prediction"):
            assert Path(result["files"][key]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, err = ekd("partition", "--segments", "4", "--json", "--no-figures")
    assert code == 0, err
    result = json.loads(out)
    assert set(result["files"]) == {"partition"}
    part = load_partition(result["files"]["partition"])
    rank = np.argsort(np.argsort(e, kind="stable"), kind="stable")
    np.testing.assert_array_equal(part.segments.numpy(), rank // (N // 4))
    # the text output: counts and thresholds
    code, out, err = ekd("partition", "--rate", "0.2", "--no-figures")
    assert code == 0, err
    assert "low" in out and "E_low" in out and f"{math.floor(N * 0.2)}" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "0.7"], "(0, 0.5]"),
        (["--rate", "0"], "(0, 0.5]"),
        (["--low-rate", "0.7", "--high-rate", "0.5"], "at most 1"),
        (["--low-rate", "1.5", "--high-rate", "0.2"], "--low-rate must be in (0, 1), got 1.5."),
        (["--rate", "0.001"], "too small for 160 samples"),
        (["--segments", "1"], "number of segments"),
        (["--teacher", "resnet20", "--rate", "0.2"], "`ekd score --teacher resnet20 --data fake`"),
        (["--config", "PLAIN", "--data", "digits", "--scores", "SCORES", "--rate", "0.2"], "another dataset"),
    ],
)
def test_partition_bad_input_is_one_sentence_and_writes_nothing(
    ws: Path, ekd: Any, args: list[str], message: str
) -> None:
    assert ekd("score", "--quiet")[0] == 0
    (ws / "plain.toml").write_text(f'store = "{ws / "store"}"\n')  # no [data_options] of the fake data
    args = [{"SCORES": str(score_file(ws)), "PLAIN": str(ws / "plain.toml")}.get(a, a) for a in args]
    before = files_under(ws / "store")
    code, out, err = ekd("partition", *args)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    if "--data" in args:  # both fingerprints, so the user sees what differs
        table = load_scores(score_file(ws))
        assert table.meta.dataset_fingerprint in err and "1442:" in err
    assert files_under(ws / "store") == before


def test_partition_of_long_tailed_data_prints_per_class_counts(
    tmp_path: Path, ekd: Any, shared_data: Path
) -> None:
    data = shared_data / "tiny_cifar10_lossless.npz"
    if not data.is_file():
        pytest.skip(f"{data} not found")
    common = ["--data", "cifar10-lt", "--data-root", str(data), "--set", "data_options.imbalance_factor=0.1"]
    key = "cifar10-lt-imbalance_factor0.1"
    write_teacher(tmp_path / "store" / "models" / key / "resnet8.safetensors", key, 10, 0)
    assert ekd("score", "--teacher", "resnet8", *common, "--quiet")[0] == 0
    table = load_scores(tmp_path / "store" / "scores" / key / "resnet8.safetensors")
    code, out, err = ekd("partition", "--teacher", "resnet8", *common, "--rate", "0.2", "--no-figures")
    assert code == 0, err
    e, y = table.energies.double().numpy(), table.labels.numpy()
    e_low, e_high = ref_thresholds(e, 0.2, 0.2)
    rows = {line.split()[0]: line.split()[1:5] for line in out.splitlines() if line[:1].isalpha()}
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for c, name in enumerate(names):
        members = y == c
        want = [members.sum(), (members & (e < e_low)).sum(), 0, (members & (e > e_high)).sum()]
        want[2] = want[0] - want[1] - want[3]
        assert rows[name] == [str(int(v)) for v in want], name
    assert int(rows["airplane"][0]) > int(rows["truck"][0])  # the head class has more images

"""The commands end to end on small fake data: train -> score -> partition -> distill -> evaluate."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ekdcli.store.weights import load_tensors, meta_value

# one chain of end-to-end commands on a shared store (train, score, partition, distill, evaluate)
pytestmark = pytest.mark.slow

CONFIG = """
data = "fake"
teacher = "resnet8"
student = "tiny_cnn"
recipe = "quick"
batch_size = 32
lr = 0.05

[data_options]
n_train = 192
n_test = 96
num_classes = 4
seed = 3
"""
DATA_KEY = "fake-n_test96-n_train192-num_classes4-seed3"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    (root / "ekd.toml").write_text(f'store = "{root / "store"}"\n' + CONFIG)
    return root


@pytest.fixture
def in_workspace(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(workspace)
    monkeypatch.delenv("EKD_HOME", raising=False)
    return workspace


def test_01_train_writes_weights_with_metadata(in_workspace: Path, ekd: Any) -> None:
    code, out, err = ekd("train", "--model", "resnet8", "--epochs", "4", "--json", "--quiet")
    assert code == 0, err
    result = json.loads(out)
    weights = Path(result["weights"])
    assert weights == in_workspace / "store" / "models" / DATA_KEY / "resnet8.safetensors"
    _, meta = load_tensors(weights)
    assert meta_value(meta, "arch") == "resnet8" and meta_value(meta, "num_classes") == 4
    assert result["best_top1"] > 0.40  # 4 classes: chance is 25%
    run = Path(result["run_dir"])
    for name in ("config.toml", "metrics.jsonl", "summary.json", "best.safetensors", "last.safetensors"):
        assert (run / name).is_file(), name
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 4


def test_01b_resume_continues_a_run_from_its_own_config(in_workspace: Path, ekd: Any) -> None:
    code, out, err = ekd("train", "--model", "tiny_cnn", "--epochs", "1", "--json", "--quiet")
    assert code == 0, err
    run = Path(json.loads(out)["run_dir"])
    (in_workspace / "elsewhere").mkdir()
    os.chdir(in_workspace / "elsewhere")  # no ekd.toml here: the run's config.toml must be used
    code, out, err = ekd("train", "--resume", str(run), "--epochs", "3", "--json", "--quiet")
    os.chdir(in_workspace)
    assert code == 0, err
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    assert json.loads(out)["run_dir"] == str(run)


def test_02_score_summary_and_reuse(in_workspace: Path, ekd: Any) -> None:
    code, out, err = ekd("score", "--teacher", "resnet8", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["computed"] is True and Path(result["scores"]).is_file()
    assert Path(result["histogram"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = result["summary"]
    assert summary["n"] == 192
    assert summary["low"]["mean_confidence"] > summary["high"]["mean_confidence"]
    code, out, _ = ekd("score", "--teacher", "resnet8", "--json")
    assert code == 0 and json.loads(out)["computed"] is False  # a matching file is reused


def test_03_partition_counts_follow_the_formula(in_workspace: Path, ekd: Any) -> None:
    code, out, err = ekd("partition", "--teacher", "resnet8", "--rate", "0.25", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["counts"] == {"low": 48, "others": 96, "high": 48}  # floor(192 * 0.25) each side
    for key in ("partition", "grid", "average_prediction"):
        assert Path(result["files"][key]).stat().st_size > 0
    code, out, err = ekd("partition", "--teacher", "resnet8", "--segments", "4", "--json")
    assert code == 0, err
    assert len(json.loads(out)["segment_edges"]) == 3


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("ce", []),
        ("kd", []),
        ("dkd", []),
        ("energy_kd", ["--preset", "official"]),
        ("energy_dkd", ["--augment", "he-cutmix", "--rate", "0.5"]),
        ("kd", ["--augment", "he-mixup", "--rate", "1.0", "--mode", "replace"]),
    ],
)
def test_04_distill_each_method(in_workspace: Path, ekd: Any, method: str, extra: list[str]) -> None:
    code, out, err = ekd("distill", "--method", method, *extra, "--epochs", "8", "--json", "--quiet")
    assert code == 0, err
    result = json.loads(out)
    run = Path(result["run_dir"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_top1"] == pytest.approx(result["best_top1"])
    assert result["best_top1"] > 0.35  # beats chance (25%)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 8
    if method.startswith("energy"):
        described = result["objective"]["distiller"]
        assert described["thresholds"]["low"] < described["thresholds"]["high"]
        assert any(k.startswith("n_T") for k in json.dumps(records[-1]).split('"'))
    if "--augment" in extra:
        assert result["objective"]["augmentation"]["rate"] == float(extra[extra.index("--rate") + 1])


def test_05_evaluate_compares_runs(in_workspace: Path, ekd: Any) -> None:
    runs = sorted(str(p) for p in (in_workspace / "store" / "runs").glob("distill-*"))
    code, out, err = ekd("evaluate", *runs, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert len(result["targets"]) == len(runs)
    assert all(0.0 <= t["top1"] <= 100.0 for t in result["targets"])
    assert sum(g["n"] for g in result["groups"]) == len(runs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["distill", "--method", "energy_kdd"], "Did you mean 'energy_kd'"),
        (["distill", "--method", "energy_kd", "--rate", "1.5"], "--rate must be in (0, 0.5]"),
        (["distill", "--method", "kd", "--preset", "paper"], "energy temperature rules"),
        (["distill", "--method", "energy_kd", "--energy-temperature", "0"], "energy"),
        (["distill", "--method", "kd", "--teacher", "resnet20"], "ekd train --model resnet20"),
        (["distill", "--augment", "he-cutmx"], "Did you mean 'he-cutmix'"),
        (["score", "--teacher", "resnet8", "--data", "fake", "--rate", "0.7"], "(0, 0.5]"),
    ],
)
def test_06_bad_input_is_one_sentence_exit_2_and_writes_nothing(
    in_workspace: Path, ekd: Any, args: list[str], message: str
) -> None:
    before = sorted(p.name for p in (in_workspace / "store" / "runs").iterdir())
    code, out, err = ekd(*args)
    assert code == 2, (out, err)
    assert message in err and err.startswith("error: ") and "Traceback" not in err
    assert sorted(p.name for p in (in_workspace / "store" / "runs").iterdir()) == before


def test_07_teacher_for_other_data_is_refused(in_workspace: Path, ekd: Any, tmp_path: Path) -> None:
    weights = in_workspace / "store" / "models" / DATA_KEY / "resnet8.safetensors"
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    code, _, err = ekd(
        "score",
        "--config",
        str(empty),
        "--teacher",
        str(weights),
        "--data",
        "digits",
        "--store",
        str(tmp_path),
    )
    assert code == 2
    assert "predicts 4 classes" in err or "channel" in err

"""``ekd distill --teacher-cache`` end to end: created, then reused with every view a hit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

CONFIG = """
data = "fake"
teacher = "tiny_cnn"
student = "tiny_cnn"
recipe = "quick"
epochs = 1
batch_size = 32
precision = "fp32"

[data_options]
n_train = 64
n_test = 32
num_classes = 4
seed = 3
"""


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "ekd.toml").write_text(f'store = "{tmp_path / "store"}"\n' + CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EKD_HOME", raising=False)
    return tmp_path


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
def test_distill_with_the_teacher_cache_twice(workspace: Path, ekd: Any) -> None:
    code, _, err = ekd("train", "--model", "tiny_cnn", "--quiet")
    assert code == 0, err
    code, first, err = ekd("distill", "--method", "kd", "--teacher-cache", "--run-name", "cold")
    assert code == 0, err
    assert "teacher cache" in first and "created" in first
    assert "teacher cache: 0 hits, 64 misses" in first
    code, second, err = ekd("distill", "--method", "kd", "--teacher-cache", "--run-name", "warm")
    assert code == 0, err
    assert "reused: 64 of" in second and "teacher cache: 64 hits, 0 misses (100.0%" in second
    files = sorted(p.name for p in (workspace / "store" / "cache").rglob("*") if p.is_file())
    assert files == ["fp32-float32.filled.npy", "fp32-float32.json", "fp32-float32.logits.npy"]
    runs = workspace / "store" / "runs"
    losses = [
        json.loads((runs / name / "metrics.jsonl").read_text().splitlines()[-1]) for name in ("cold", "warm")
    ]
    assert losses[0]["loss"] == pytest.approx(losses[1]["loss"], rel=1e-6)
    assert losses[1]["stats"]["teacher_cache_hits"] == 64.0

    code, plain, err = ekd("distill", "--method", "kd", "--run-name", "plain")
    assert code == 0, err
    assert "teacher cache" not in plain
    off = json.loads((runs / "plain" / "metrics.jsonl").read_text().splitlines()[-1])
    assert off["loss"] == pytest.approx(losses[0]["loss"], rel=1e-6)

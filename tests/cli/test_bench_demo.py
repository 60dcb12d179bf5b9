"""`ekd bench` on fake data, and the demo in its quick setting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ekdcli.errors import UsageError
from ekdcli.jobs.bench import parse_rates

CONFIG = """
data = "fake"
teacher = "tiny_cnn"
student = "tiny_cnn"
recipe = "quick"
batch_size = 16

[data_options]
n_train = 64
n_test = 32
num_classes = 4
"""


def test_bench_two_rates_writes_table_json_and_plot(tmp_path: Path, ekd: Any) -> None:
    (tmp_path / "ekd.toml").write_text(CONFIG)
    code, _, err = ekd("train", "--model", "tiny_cnn", "--epochs", "1", "--quiet")
    assert code == 0, err
    out_dir = tmp_path / "bench"
    code, out, err = ekd(
        "bench", "--aug-rates", "0.25,1.0", "--steps", "2", "--rounds", "2", "--out", str(out_dir), "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    rows = result["rows"]
    assert [row["rate"] for row in rows] == [0.25, 1.0]
    assert rows[0]["increase_pct"] == 0.0
    assert rows[1]["paper_increase_pct"] == 33.26
    # rate 1.0 in extra mode mixes every clean image: 16 per step; rate 0.25 mixes about a quarter
    assert rows[1]["augmented_per_step"] == 16.0
    assert 0.0 <= rows[0]["augmented_per_step"] < 16.0
    assert json.loads((out_dir / "bench.json").read_text())["rows"] == rows
    assert "+33.26%" in (out_dir / "bench.txt").read_text()
    assert (out_dir / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_teacher_cache_uses_and_fills_the_store_cache(tmp_path: Path, ekd: Any) -> None:
    (tmp_path / "ekd.toml").write_text(CONFIG)
    code, _, err = ekd("train", "--model", "tiny_cnn", "--epochs", "1", "--quiet")
    assert code == 0, err
    args = ("bench", "--aug-rates", "0.5,1.0", "--steps", "2", "--rounds", "1", "--teacher-cache", "--json")
    code, out, err = ekd(*args, "--out", str(tmp_path / "b1"))
    assert code == 0, err
    first = json.loads(out)["teacher_cache"]
    cache_dir = Path(first["path"])
    assert cache_dir.is_relative_to(tmp_path / "store" / "cache")
    assert any(cache_dir.glob("*.logits.npy"))
    # 2 rates x (1 warm-up + 2 timed) steps of 16 clean rows; 64 samples: rows repeat across rates
    assert first["hits"] + first["misses"] == 2 * 3 * 16
    assert first["misses"] > 0
    code, out, err = ekd(*args, "--out", str(tmp_path / "b2"))
    assert code == 0, err
    second = json.loads(out)["teacher_cache"]
    assert second["path"] == first["path"]
    assert second["hits"] > first["hits"]  # the second bench reads what the first one stored
    # without the flag the bench does not touch the cache
    code, out, err = ekd(*args[:-2], "--json", "--out", str(tmp_path / "b3"))
    assert code == 0, err
    assert json.loads(out)["teacher_cache"] is None


def test_bench_rate_parsing() -> None:
    assert parse_rates("0.1, 0.5,1.0") == [0.1, 0.5, 1.0]
    for bad, message in (("0.1,abc", "comma-separated"), ("0,0.5", r"\(0, 1\]"), ("0.5,0.5", "twice")):
        with pytest.raises(UsageError, match=message):
            parse_rates(bad)


def test_demo_quick_runs_the_whole_pipeline(tmp_path: Path, ekd: Any) -> None:
    code, out, err = ekd("demo", "--quick", "--store", str(tmp_path / "store"), "--json")
    assert code == 0, err
    result = json.loads(out)
    artifacts = result["artifacts"]
    for key in ("teacher", "scores", "histogram", "partition", "grid", "average_prediction", "bench"):
        assert Path(artifacts[key]).is_file(), key
    for key in ("kd_run", "energy_kd_run"):
        assert (Path(artifacts[key]) / "summary.json").is_file()
    assert result["energy_kd"]["augment"] == "he-cutmix"

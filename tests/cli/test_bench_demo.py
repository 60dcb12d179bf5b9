"""`ekd bench` on fake data, and the demo in its quick setting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ekdcli.jobs.bench import parse_rates
from ekdcli.util.errors import UsageError

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


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
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
    assert rows[0]["increase"] == 0.0
    assert rows[1]["paper_increase"] == 0.3326
    # rate 1.0 in extra mode mixes every clean image: 16 per step; rate 0.25 mixes about a quarter
    assert rows[1]["augmented_per_step"] == 16.0
    assert 0.0 <= rows[0]["augmented_per_step"] < 16.0
    assert json.loads((out_dir / "bench.json").read_text())["rows"] == rows
    text = (out_dir / "bench.txt").read_text()
    assert "+33.26%" in text and "epoch times extrapolated from 2 x 2 steps per rate" in text
    assert (out_dir / "bench.png").read_bytes()[:4] == b"\x89PNG"
    assert "round 1/2, rate 0.25: 2 steps, median " in err and "round 2/2, rate 1: 2 steps" in err
    for row in rows:  # error bars around the increase, and the steps' spread
        low, high = row["increase_range"]
        assert low <= high and row["noise"] >= 0
    # one epoch = 64 // 16 = 4 steps: the epoch time is the median step time times 4
    assert result["steps_per_epoch"] == 4 and result["mode"] == "extra"
    for row in rows:
        assert row["seconds_per_epoch"] == pytest.approx(4 * row["seconds_per_step"])
        assert row["images_per_s"] == pytest.approx(16 / row["seconds_per_step"])


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
def test_bench_epochs_trains_each_rate_and_reports_accuracy(tmp_path: Path, ekd: Any) -> None:
    (tmp_path / "ekd.toml").write_text(CONFIG)
    code, _, err = ekd("train", "--model", "tiny_cnn", "--epochs", "1", "--quiet")
    assert code == 0, err
    out_dir = tmp_path / "bench"
    args = ("--aug-rates", "0.5,1.0", "--mode", "replace", "--steps", "1", "--rounds", "1", "--epochs", "1")
    code, out, err = ekd("bench", *args, "--out", str(out_dir), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["mode"] == "replace"
    for row in result["rows"]:
        assert row["epochs"] == 1 and 0.0 <= row["best_top1"] <= 1.0 and 0.0 <= row["last_top1"] <= 1.0
    header, *lines = (out_dir / "bench.txt").read_text().splitlines()
    assert header.endswith("best top-1  last top-1")
    assert lines[0].split()[-2:] == [
        f"{100 * result['rows'][0]['best_top1']:.2f}",  # fractions in JSON, percent in the table
        f"{100 * result['rows'][0]['last_top1']:.2f}",
    ]


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
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


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
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
    # both students evaluated side by side, one configuration each
    evaluation = result["evaluation"]
    assert [t["run_dir"] for t in evaluation["targets"]] == [artifacts["kd_run"], artifacts["energy_kd_run"]]
    assert sorted(g["label"] for g in evaluation["groups"]) == [
        "energy_kd+he-cutmix resnet32->resnet8",
        "kd resnet32->resnet8",
    ]
    # the bench's three outputs, and its rows: rate 1.0 mixes the whole batch of 64
    bench = result["bench"]
    assert Path(artifacts["bench_plot"]).read_bytes()[:4] == b"\x89PNG"
    assert json.loads(Path(bench["files"]["json"]).read_text())["rows"] == bench["rows"]
    assert [row["rate"] for row in bench["rows"]] == [0.1, 0.5, 1.0]
    assert bench["rows"][2]["augmented_per_step"] == 64.0


def test_bench_refuses_a_bad_student_or_option_before_any_work(tmp_path, ekd) -> None:
    # Nothing configured: the default pair's teacher would be trained first; bad input must stop before.
    for args, expected in (
        (("--student", "resnet_nope"), "unknown model 'resnet_nope'"),
        (("--set", "distiller.temp=4"), "'temp'"),
    ):
        code, out, err = ekd("bench", "--aug-rates", "0.1,0.5", "--steps", "1", "--rounds", "1", *args)
        assert code == 2 and out == "", err
        assert err.startswith("error: ") and expected in err and err.count("\n") == 1, err
        assert not (tmp_path / "store").exists(), args


def test_bench_error_bars_and_the_noise_note_follow_the_step_times() -> None:
    from ekdcli.jobs.bench import NOISY, format_bench, spread

    assert spread([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 4.0)  # inclusive quartiles
    assert spread([0.5]) == (0.5, 0.5)
    row = {"seconds_per_epoch": 1.0, "images_per_s": 1.0, "augmented_per_step": 0.0, "paper_increase": None}
    payload = {
        "rows": [
            {**row, "rate": 0.1, "increase": 0.0, "noise": NOISY / 2},
            {**row, "rate": 0.5, "increase": -0.3, "noise": 2 * NOISY},
        ],
        "rounds": 3,
        "steps_per_round": 5,
    }
    text = format_bench(payload)
    assert "too noisy to compare: the step times of rate 0.5 spread over 20% of their median" in text
    payload["rows"][1]["noise"] = NOISY / 2
    assert "too noisy" not in format_bench(payload)

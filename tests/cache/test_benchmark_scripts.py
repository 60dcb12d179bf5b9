"""The benchmark scripts run end to end at their smallest settings (they back BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    command = [sys.executable, str(ROOT / "benchmarks" / name), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_engine_benchmark_with_cache_sides(tmp_path: Path) -> None:
    out = tmp_path / "engine.json"
    done = run_script(
        "engine.py", "--teacher", "resnet8", "--student", "resnet8", "--method", "energy_kd", "--cache",
        "--subset", "128", "--batch-size", "32", "--steps", "1", "--rounds", "1", "--workers", "0",
        "--data", str(tmp_path / "missing.npz"), "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert set(record["median"]) == {"engine", "engine+cache-cold", "engine+cache-warm", "reference"}
    assert record["vs_reference"]["reference"] == 1.0
    assert all(value > 0 for value in record["median"].values())


@pytest.mark.slow
def test_score_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "score.json"
    done = run_script(
        "score.py", "--teacher", "resnet8", "--subset", "64", "--batch-size", "32", "--rounds", "1",
        "--data", str(tmp_path / "missing.npz"), "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert record["ratio"] == pytest.approx(
        record["median"]["ekd score pass"] / record["median"]["raw teacher forward"]
    )


@pytest.mark.slow
def test_evaluate_benchmark(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "evaluate.json"
    done = run_script(
        "evaluate.py", "--data", str(shared_data / "tiny_cifar100.npz"), "--runs", "2", "--train-images", "64",
        "--rounds", "1", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert set(record["median"]) == {"forward passes", "ekd evaluate", "ekd evaluate, cached", "data loading"}
    assert record["ratio"] == pytest.approx(
        record["median"]["ekd evaluate"] / record["median"]["forward passes"]
    )
    assert "ekd evaluate / forward passes = " in done.stdout

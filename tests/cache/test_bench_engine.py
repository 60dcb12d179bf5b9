"""``ekd bench-engine`` (variants interleaved, cache cold/warm) and ``ekd bench --baseline``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ekdcli.jobs.bench_engine import engine_verdict, parse_variants
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


@pytest.fixture
def trained(tmp_path: Path, ekd: Any) -> Path:
    (tmp_path / "ekd.toml").write_text(CONFIG)
    code, _, err = ekd("train", "--model", "tiny_cnn", "--epochs", "1", "--quiet")
    assert code == 0, err
    return tmp_path


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
def test_engine_bench_reports_each_variant_and_the_default(trained: Path, ekd: Any) -> None:
    out_dir = trained / "bench"
    code, out, err = ekd(
        "bench-engine", "--variants", "fp32,bf16,nchw,cache-cold,cache-warm",
        "--steps", "2", "--rounds", "2", "--out", str(out_dir), "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    rows = {row["variant"]: row for row in result["rows"]}
    assert list(rows) == ["fp32", "bf16", "nchw", "cache-cold", "cache-warm"]
    default = result["default"]["precision"]
    assert result["reference_variant"] == default and rows[default]["vs_default"] == 1.0
    assert result["default"]["teacher_cache"] is False and result["method"] == "energy_kd"
    assert result["default"]["why"].startswith("auto: ")
    assert rows["cache-cold"]["cache_hit_rate"] == 0.0 and rows["cache-warm"]["cache_hit_rate"] == 1.0
    assert rows["nchw"]["channels_last"] is False and rows["nchw"]["precision"] == default
    for row in rows.values():
        assert len(row["images_per_s_rounds"]) == 2 and row["images_per_s"] > 0
        expected = row["images_per_s"] / rows[default]["images_per_s"]
        assert row["vs_default"] == pytest.approx(expected)
    assert rows["fp32"]["cache_hit_rate"] is None
    saved = json.loads((out_dir / "bench-engine.json").read_text())
    assert saved["rows"] == result["rows"]
    text = (out_dir / "bench-engine.txt").read_text()
    assert f"The engine trains with {default} here" in text and "100%" in text


def test_variant_names_are_checked() -> None:
    assert parse_variants("fp32, cache-warm") == ["fp32", "cache-warm"]
    with pytest.raises(UsageError, match="unknown engine variant 'cache-hot'.*cache-cold"):
        parse_variants("cache-hot")
    with pytest.raises(UsageError, match="twice"):
        parse_variants("fp32,fp32")


def test_verdict_says_whether_the_measurement_agrees_with_the_default() -> None:
    def payload(fp32: float, bf16: float) -> dict[str, Any]:
        rows = [
            {"variant": "fp32", "images_per_s": fp32, "vs_default": fp32 / bf16, "cache_hit_rate": None},
            {"variant": "bf16", "images_per_s": bf16, "vs_default": 1.0, "cache_hit_rate": None},
            {"variant": "cache-warm", "images_per_s": 3 * bf16, "vs_default": 3.0, "cache_hit_rate": 1.0},
        ]
        default = {"precision": "bf16", "why": "auto: x", "channels_last": True, "compile": False}
        return {"rows": rows, "default": default, "reference_variant": "bf16"}

    assert "bf16/fp32 = 2.00x: the measurement agrees" in engine_verdict(payload(50.0, 100.0))
    assert "bf16/fp32 = 0.50x: the measurement disagrees" in engine_verdict(payload(100.0, 50.0))
    assert "teacher cache warm: 3.00x the default (100% hits)" in engine_verdict(payload(1.0, 1.0))


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
def test_bench_baseline_adds_a_row_without_augmentation(trained: Path, ekd: Any) -> None:
    code, out, err = ekd(
        "bench", "--aug-rates", "0.5,1.0", "--mode", "replace", "--baseline", "--steps", "2", "--rounds", "1",
        "--out", str(trained / "b"), "--json",
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert [row["rate"] for row in rows] == [None, 0.5, 1.0]
    assert rows[0]["augmented_per_step"] == 0.0 and rows[2]["augmented_per_step"] == 16.0
    assert rows[0]["vs_no_augmentation"] == 0.0
    assert rows[1]["increase"] == 0.0  # Table 6's column stays relative to the first rate
    expected = rows[2]["seconds_per_step"] / rows[0]["seconds_per_step"] - 1.0  # a fraction, not percent
    assert rows[2]["vs_no_augmentation"] == pytest.approx(expected)
    text = (trained / "b" / "bench.txt").read_text()
    assert "  none " in text and "vs none" in text

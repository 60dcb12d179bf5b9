"""``ekd evaluate`` end to end: a really trained tiny run, evaluated through the CLI with --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ekdcli.cli.main import cli, main

TOML = """
data = "fake"
precision = "fp32"
[data_options]
n_train = 64
n_test = 32
"""


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(cli, ["evaluate", "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output and "--which [best|last]" in result.output


def test_evaluate_a_trained_run_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ekdcli.config import resolve
    from ekdcli.jobs.train import run_train

    (tmp_path / "ekd.toml").write_text(TOML)
    trained = run_train(
        resolve({"model": "tiny_cnn", "epochs": 2, "batch_size": 16, "run_name": "t1", "quiet": True})
    )
    capsys.readouterr()
    main(["evaluate", "t1", "--json", "--which", "last"])
    payload = json.loads(capsys.readouterr().out)
    (target,) = payload["targets"]
    summary = trained.summary
    # the run's own last-epoch test evaluation and this evaluation of its last weights agree exactly
    assert target["top1"] == pytest.approx(summary["last_top1"])
    assert target["run"]["best_top1"] == pytest.approx(summary["best_top1"])
    assert target["run"]["last_epoch"] == 2 and target["run"]["finished"] is True
    assert target["label"] == "ce tiny_cnn" and target["precision"] == "fp32"
    assert 0.0 <= target["ece"] <= 1.0 and target["nll"] > 0
    assert len(target["per_class_accuracy"]) == 10
    assert payload["groups"][0]["n"] == 1 and payload["groups"][0]["targets"] == ["t1"]

    # the stored model made by that run shows the run's history too; text output by default
    main(["evaluate", "tiny_cnn", "--which", "best"])
    text = capsys.readouterr().out
    assert "top-1" in text and "ECE" in text and "run: best top-1" in text


def test_bad_target_exits_2_with_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "no-such-run"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no target 'no-such-run'") and "Traceback" not in err

"""ekdcli.store.rundir: the one module that writes and reads run directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ekdcli.store import rundir
from ekdcli.util.errors import UsageError


def _write(run: Path, records: list[dict], summary: dict | None, environment: dict | None) -> None:
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if summary is not None:
        (run / "summary.json").write_text(json.dumps(summary))
    if environment is not None:
        (run / "environment.json").write_text(json.dumps(environment))


def test_a_run_written_now_is_format_2_and_reads_back_unchanged(tmp_path: Path) -> None:
    writer = rundir.RunWriter(tmp_path / "run")
    writer.start("seed = 1\n", {"device": "cpu"})
    history = [{"epoch": 1, "test_top1": 0.25, "train_top1": 0.5}, {"epoch": 2, "test_top1": 0.75}]
    writer.metrics(history)
    writer.weights("last", {"w": torch.ones(2)}, {"epoch": 2})
    writer.summary({"best_top1": 0.75, "best_epoch": 2, "last_top1": 0.75, "epochs": 2})
    run = tmp_path / "run"
    assert json.loads((run / "environment.json").read_text()) == {"device": "cpu", "run_format": 2}
    assert rundir.read_config(run) == {"seed": 1}
    assert rundir.read_metrics(run) == history
    assert rundir.is_run_dir(run) and rundir.is_finished(run)
    assert rundir.weights_path(run, "last") == run / "last.safetensors"
    with pytest.raises(UsageError, match="has no best.safetensors .* --which last"):
        rundir.weights_path(run, "best")
    assert rundir.history(run)["best_top1"] == 0.75 and rundir.history(run)["epochs_planned"] == 2


def test_an_older_run_in_percent_is_read_as_fractions(tmp_path: Path) -> None:
    run = tmp_path / "old"
    records = [{"epoch": 1, "test_top1": 40.0, "test_top5": 90.0, "train_top1": 55.5, "loss": 1.5}]
    _write(run, records, {"best_top1": 40.0, "last_top1": 40.0, "epochs": 1}, {"device": "cpu"})
    assert rundir.run_format(run) == 1
    [record] = rundir.read_metrics(run)
    assert record == {"epoch": 1, "test_top1": 0.40, "test_top5": 0.90, "train_top1": 0.555, "loss": 1.5}
    assert rundir.read_summary(run) == {"best_top1": 0.40, "last_top1": 0.40, "epochs": 1}
    assert rundir.history(run)["best_top1"] == pytest.approx(0.40)


def test_a_run_without_environment_is_the_current_format(tmp_path: Path) -> None:
    run = tmp_path / "new"
    _write(run, [{"epoch": 1, "test_top1": 0.5}], None, None)
    assert rundir.run_format(run) == rundir.RUN_FORMAT == 2
    assert rundir.read_metrics(run) == [{"epoch": 1, "test_top1": 0.5}]


def test_broken_files_are_one_sentence(tmp_path: Path) -> None:
    run = tmp_path / "bad"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n')
    with pytest.raises(UsageError, match="metrics.jsonl line 2 is not JSON"):
        rundir.read_metrics(run)
    (run / "config.toml").write_bytes(b"\xff\xfe junk")
    with pytest.raises(UsageError, match="config.toml is not valid TOML"):
        rundir.read_config(run)
    assert not rundir.is_run_dir(tmp_path)

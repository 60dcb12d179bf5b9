"""``ekd evaluate`` end to end: a really trained tiny run, evaluated through the CLI with --json."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
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


# ------------------------------------------------------------------ bounded, talkative, cached
def _two_runs(tmp_path: Path) -> None:
    from ekdcli.config import resolve
    from ekdcli.jobs.train import run_train

    (tmp_path / "ekd.toml").write_text(TOML)
    for seed, name in enumerate(("r1", "r2")):  # other seeds: other weights (the cache keys by weights)
        flags = {"model": "tiny_cnn", "epochs": 1, "batch_size": 16, "run_name": name, "seed": seed}
        run_train(resolve({**flags, "quiet": True}))


def _count_passes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The split of every forward pass ekd evaluate runs."""
    import ekdcli.engine

    passes: list[str] = []
    real = ekdcli.engine.predict

    def counted(model: Any, dataset: Any, split: str = "train", *args: Any, **kwargs: Any) -> Any:
        passes.append(split)
        return real(model, dataset, split, *args, **kwargs)

    monkeypatch.setattr(ekdcli.engine, "predict", counted)
    return passes


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
def test_rows_are_printed_as_each_target_finishes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ekdcli.jobs.evaluate as job

    _two_runs(tmp_path)
    capsys.readouterr()
    printed_before: list[str] = []
    real = job.evaluate_target

    def spy(*args: Any, **kwargs: Any) -> Any:
        printed_before.append(capsys.readouterr().out)  # what was on stdout when this target started
        return real(*args, **kwargs)

    monkeypatch.setattr(job, "evaluate_target", spy)
    main(["evaluate", "store/runs/*"])  # a pattern the shell left as it was: expanded by ekd
    rest = capsys.readouterr().out
    assert "r1" not in printed_before[0] and "target" in printed_before[0]  # the header first
    assert re.search(r"^r1 +\d+\.\d\d", printed_before[1], flags=re.M)  # r1's row before r2 began
    assert re.search(r"^r2 +\d+\.\d\d", rest, flags=re.M) and "by configuration" in rest
    assert "low" not in printed_before[0]  # no energy-group columns without --groups


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
def test_a_second_evaluation_comes_from_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _two_runs(tmp_path)
    passes = _count_passes(monkeypatch)
    capsys.readouterr()
    main(["evaluate", "r1", "r2", "--json"])
    first = json.loads(capsys.readouterr().out)
    assert passes == ["test", "test"] and first["cached"] == 0  # the test split only, once per run
    main(["evaluate", "r1", "r2", "--json"])
    second = json.loads(capsys.readouterr().out)
    assert passes == ["test", "test"] and second["cached"] == 2  # no forward pass at all
    assert [t["top1"] for t in second["targets"]] == [t["top1"] for t in first["targets"]]
    assert len(list((tmp_path / "store" / "cache" / "evaluations").glob("*.json"))) == 2
    main(["evaluate", "r1", "--json", "--no-cache"])
    assert passes == ["test", "test", "test"]
    # other weights under the same name are measured again; an unreadable entry is ignored
    from ekdcli.store.weights import load_tensors, save_tensors

    weights = tmp_path / "store" / "runs" / "r1" / "best.safetensors"
    tensors, meta = load_tensors(weights)
    save_tensors(weights, {k: v + 0.01 if v.is_floating_point() else v for k, v in tensors.items()}, meta)
    for entry in (tmp_path / "store" / "cache" / "evaluations").glob("*.json"):
        entry.write_text("{not json")
    main(["evaluate", "r1", "r2", "--json"])
    assert passes == ["test", "test", "test", "test", "test"]
    capsys.readouterr()


def test_groups_cost_one_training_pass_and_show_their_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ekdcli.config import resolve
    from ekdcli.jobs.build import load_dataset
    from ekdcli.method.scoring import save_scores, score_from_logits

    _two_runs(tmp_path)
    data = load_dataset(resolve({}))
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(3))
    table = score_from_logits(
        logits, data.train_labels, 4.0, teacher="t", dataset_fingerprint=data.fingerprint()
    )
    save_scores(tmp_path / "t.safetensors", table)
    main(["evaluate", "r1", "r2"])
    passes = _count_passes(monkeypatch)
    capsys.readouterr()
    main(["evaluate", "r1", "r2", "--scores", str(tmp_path / "t.safetensors"), "--limit-train", "40"])
    out = capsys.readouterr().out
    assert passes == ["train", "train"]  # the test metrics came from the cache
    header = next(line for line in out.splitlines() if line.startswith("target"))
    assert header.split()[-3:] == ["low", "others", "high"]
    assert "top-1 on 40 training images in the teacher's low/others/high energy sets (rate 0.2)" in out


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
def test_ctrl_c_keeps_and_prints_what_is_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ekdcli.jobs.evaluate as job

    _two_runs(tmp_path)
    real = job.evaluate_target
    calls: list[int] = []

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(job, "evaluate_target", interrupted)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "r1", "r2"])
    assert info.value.code == 130
    out, err = capsys.readouterr()
    assert re.search(r"^r1 +\d+\.\d\d", out, flags=re.M) and "interrupted: 1 of 2 targets evaluated." in out
    assert "warning: interrupted: keeping the 1 of 2 targets evaluated." in err
    calls.clear()
    with pytest.raises(SystemExit):
        main(["evaluate", "r1", "r2", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert payload["interrupted"] is True and [t["target"] for t in payload["targets"]] == ["r1"]


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
def test_the_help_example_runs_star_finds_the_stores_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _two_runs(tmp_path)
    capsys.readouterr()
    main(["evaluate", "runs/*", "--json"])  # no ./runs: the shell leaves the pattern, ekd reads the store
    payload = json.loads(capsys.readouterr().out)
    assert [Path(t["target"]).name for t in payload["targets"]] == ["r1", "r2"]
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "nothing/*"])
    assert info.value.code == 2
    assert "error: nothing matches 'nothing/*' here (nor under the store " in capsys.readouterr().err


@pytest.mark.slow
def test_runs_without_weights_are_skipped_with_a_note_and_mixed_data_get_a_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ekdcli.config import resolve
    from ekdcli.jobs.train import run_train

    (tmp_path / "ekd.toml").write_text(TOML)
    for name, n_test in (("r1", 32), ("r2", 16)):  # two data: fake with 32 and with 16 test images
        flags = {"model": "tiny_cnn", "epochs": 1, "batch_size": 16, "run_name": name}
        run_train(resolve({**flags, "data_options": {"n_test": n_test}, "quiet": True}))
    stopped = tmp_path / "store" / "runs" / "r0"  # stopped before its first epoch: a config, no weights
    stopped.mkdir()
    (stopped / "config.toml").write_text('data = "fake"\n')
    capsys.readouterr()
    main(["evaluate", "runs/*"])
    out = capsys.readouterr().out
    assert "note: skipped 1 run(s) without weights: " in out and "r0 (no best.safetensors)" in out
    header = next(line for line in out.splitlines() if line.startswith("target"))
    assert header.split()[:3] == ["target", "data", "top-1"]
    assert re.search(r"^r1 +fake-n_test32-n_train64 +\d+\.\d\d", out, flags=re.M)
    assert re.search(r"^r2 +fake-n_test16-n_train64 +\d+\.\d\d", out, flags=re.M)
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "runs/*", "--strict"])
    assert info.value.code == 2 and "r0 holds no weights" in capsys.readouterr().err

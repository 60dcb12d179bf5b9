"""--track through the commands: what a tracker receives, and what happens when one fails."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from track_recorder import Recorder

from ekdcli.store import rundir

TINY = ("--limit-train", "128", "--limit-test", "64")


@pytest.fixture
def teacher(ekd) -> None:  # noqa: ANN001
    code, _, err = ekd("train", "--model", "resnet8", "--epochs", "1", *TINY, "--quiet")
    assert code == 0, err


def _only_run(prefix: str) -> Path:
    store = Path("store")  # the autouse fixture's EKD_HOME, relative to the test's directory
    (run_dir,) = (p for p in (store / "runs").iterdir() if p.name.startswith(prefix))
    return run_dir.resolve()


@pytest.mark.slow
def test_a_distillation_sends_config_energy_groups_epochs_and_summary(ekd, add_tracker, teacher) -> None:  # noqa: ANN001
    recorder = Recorder()
    add_tracker("recorder", lambda: recorder)
    args = (
        "distill",
        "--teacher",
        "resnet8",
        "--student",
        "tiny_cnn",
        "--method",
        "energy_kd",
        "--epochs",
        "2",
    )
    code, _, err = ekd(*args, *TINY, "--track", "recorder", "--quiet")
    assert code == 0, err
    run_dir = _only_run("distill-")
    assert recorder.kinds() == ["start", "log_energy", "log_epoch", "log_epoch", "finish"]
    started = recorder.events[0][1]
    assert (started.run_dir, started.command, started.resumed_after_epoch) == (run_dir, "distill", None)
    assert started.config == rundir.read_config(run_dir) and started.config["track"] == ["recorder"]
    assert [payload for kind, payload in recorder.events if kind == "log_epoch"] == rundir.read_metrics(
        run_dir
    )
    status, summary, artifacts = recorder.events[-1][1]
    assert (status, summary) == ("finished", rundir.read_summary(run_dir))
    assert artifacts == {
        role: run_dir / name
        for role, name in (
            ("best", "best.safetensors"), ("last", "last.safetensors"), ("config", "config.toml"),
            ("summary", "summary.json"), ("curves", "curves.png"), ("log", "run.log"),
        )
    }  # fmt: skip

    # The energy groups: sizes and thresholds of the teacher's scores, counted here from the score file.
    from ekdcli.method.scoring import load_scores

    groups = recorder.events[1][1]
    energies = load_scores(Path("store/scores/digits/resnet8.safetensors")).energies.double()
    low, high = groups["thresholds"]["low"], groups["thresholds"]["high"]
    rule = summary["objective"]["distiller"]
    in_low = energies <= low if rule["low_rule"] == "paper" else energies < low
    assert groups["group_sizes"] == {
        "low": int(in_low.sum()),
        "mid": int((~in_low & (energies <= high)).sum()),
        "high": int((energies > high).sum()),
    }
    assert sum(groups["group_sizes"].values()) == energies.numel()  # every training sample, not only 128
    assert groups["group_sizes"]["low"] == math.floor(energies.numel() * rule["low_rate"]) + (
        rule["low_rule"] == "paper"
    )
    assert groups["temperatures"] == rule["temperatures"] and groups["thresholds"] == rule["thresholds"]


@pytest.mark.slow
def test_a_tracker_failing_mid_run_warns_once_and_the_run_finishes(ekd, add_tracker) -> None:  # noqa: ANN001
    add_tracker("flaky", lambda: Recorder(fail_at="log_epoch"))
    code, out, err = ekd("train", "--model", "tiny_cnn", "--epochs", "2", *TINY, "--track", "flaky")
    assert code == 0, err
    warning = (
        "warning: tracker 'flaky' failed at epoch 1 (ConnectionError: the server went away at log_epoch); "
        "training continues without it."
    )
    assert err.count("warning: tracker") == 1 and warning in err.splitlines()
    run_dir = _only_run("train-")
    assert [r["epoch"] for r in rundir.read_metrics(run_dir)] == [1, 2] and rundir.is_finished(run_dir)
    assert warning in (run_dir / "run.log").read_text().splitlines()


def test_a_tracker_that_cannot_start_is_one_sentence_before_training(ekd, add_tracker) -> None:  # noqa: ANN001
    add_tracker("refusing", lambda: Recorder(fail_at="start"))
    code, out, err = ekd(
        "train", "--model", "tiny_cnn", "--epochs", "1", *TINY, "--track", "refusing", "--quiet"
    )
    assert (code, out) == (1, "")
    assert err == (
        "error: tracker 'refusing' could not start (ConnectionError: the server went away at start); fix its "
        "set-up (--tracking-uri, its package) or run without it (drop it from --track).\n"
    )
    runs = Path("store") / "runs"  # no half run directory (config.toml, environment.json, run.log) stays
    assert not runs.exists() or [p.name for p in runs.iterdir() if not p.name.startswith(".")] == []


def test_an_unknown_tracker_is_refused_before_any_work(ekd) -> None:  # noqa: ANN001
    code, out, err = ekd("distill", "--method", "kd", "--epochs", "1", "--track", "tensorbord,mlflow")
    assert (code, out) == (2, "")
    assert (
        err
        == "error: unknown tracker 'tensorbord'. Did you mean 'tensorboard'? Run 'ekd list trackers' to see all.\n"
    )
    assert not Path("store").exists()  # no teacher trained, nothing scored, no run directory


def test_track_in_the_config_file_must_be_a_list_of_names(ekd) -> None:  # noqa: ANN001
    Path("ekd.toml").write_text('track = "tensorboard"\n')
    code, _, err = ekd("train", "--model", "tiny_cnn")
    assert code == 2 and "ekd.toml: 'track' must be a list of strings, not 'tensorboard' (line 1)." in err


def test_list_trackers_shows_the_first_party_ones_with_their_extra(ekd) -> None:  # noqa: ANN001
    code, out, _ = ekd("list", "trackers", "--json")
    assert code == 0
    found = {item["name"]: item for item in json.loads(out)}
    assert (
        found["tensorboard"]["plugin"] == "ekd.trackers"
        and found["tensorboard"]["info"]["extra"] == "tensorboard"
    )
    assert found["mlflow"]["info"]["extra"] == "mlflow"


def test_a_missing_tracker_package_names_the_extra() -> None:
    from ekd_plugins.trackers.common import require

    from ekdcli.util.errors import UsageError

    with pytest.raises(UsageError) as caught:
        require("ekd_no_such_module", "mlflow", "mlflow")
    assert caught.value.message == (
        "tracker 'mlflow' needs a package that is not installed (No module named 'ekd_no_such_module'); "
        "install it with pip install 'ekd[mlflow]', or drop mlflow from --track."
    )

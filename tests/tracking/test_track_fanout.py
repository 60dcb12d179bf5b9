"""The fan-out of events to a run's trackers: refusals stop the run, later failures only warn."""

from __future__ import annotations

from pathlib import Path

import pytest
from track_recorder import Recorder

from ekdcli.engine.tracking import Tracking
from ekdcli.sdk.contracts import RunInfo, flatten, numbers
from ekdcli.util.errors import JobError, UsageError


def _run(tmp_path: Path) -> RunInfo:
    config = {"data": "digits", "epochs": 2, "track": ["a"], "train": {"momentum": 0.9, "nesterov": True}}
    return RunInfo("r", tmp_path, "train", config, "", tmp_path)


def test_every_tracker_gets_every_event_in_order(tmp_path: Path) -> None:
    first, second = Recorder(), Recorder()
    tracking = Tracking([("first", first), ("second", second)])
    tracking.start(_run(tmp_path))
    tracking.log_energy({"group_sizes": {"low": 1}})
    tracking.log_epoch({"epoch": 1, "loss": 2.0})
    tracking.finish("finished", {"best_top1": 0.5}, {"best": tmp_path / "best.safetensors"})
    tracking.finish("failed", None, {})  # a second finish does nothing
    for recorder in (first, second):
        assert recorder.kinds() == ["start", "log_energy", "log_epoch", "finish"]
        assert recorder.events[3][1] == (
            "finished",
            {"best_top1": 0.5},
            {"best": tmp_path / "best.safetensors"},
        )


def test_a_tracker_that_cannot_start_stops_the_run_with_one_sentence(tmp_path: Path) -> None:
    started, refusing, never = Recorder(), Recorder(fail_at="start"), Recorder()
    tracking = Tracking([("started", started), ("refusing", refusing), ("never", never)])
    with pytest.raises(JobError) as caught:
        tracking.start(_run(tmp_path))
    assert caught.value.message == (
        "tracker 'refusing' could not start (ConnectionError: the server went away at start); fix its set-up "
        "(--tracking-uri, its package) or run without it (drop it from --track)."
    )
    assert started.kinds() == ["start", "finish"] and started.events[1][1] == ("failed", None, {})
    assert never.kinds() == [] and not tracking.started


def test_a_refusal_of_ekds_own_kind_passes_unchanged(tmp_path: Path) -> None:
    class Strict(Recorder):
        def start(self, run: RunInfo) -> None:
            raise UsageError("set WANDB_PROJECT first.")

    with pytest.raises(UsageError, match=r"^set WANDB_PROJECT first\.$"):
        Tracking([("strict", Strict())]).start(_run(tmp_path))


def test_a_tracker_failing_mid_run_is_warned_about_once_and_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flaky, steady = Recorder(fail_at="log_epoch"), Recorder()
    tracking = Tracking([("flaky", flaky), ("steady", steady)])
    tracking.start(_run(tmp_path))
    for epoch in (1, 2, 3):
        tracking.log_epoch({"epoch": epoch})
    tracking.finish("finished", None, {})
    assert flaky.kinds() == ["start", "log_epoch"]  # nothing after its failure
    assert steady.kinds() == ["start", "log_epoch", "log_epoch", "log_epoch", "finish"]
    assert capsys.readouterr().err == (
        "warning: tracker 'flaky' failed at epoch 1 (ConnectionError: the server went away at log_epoch); "
        "training continues without it.\n"
    )
    assert tracking.names == ["steady"]


def test_params_are_the_config_flattened_with_json_values(tmp_path: Path) -> None:
    assert _run(tmp_path).params() == {
        "data": "digits",
        "epochs": "2",
        "track": '["a"]',
        "train.momentum": "0.9",
        "train.nesterov": "true",
    }


def test_numbers_flatten_a_record_and_keep_only_finite_numbers() -> None:
    record = {"epoch": 3, "loss": 1.5, "losses": {"kd": 0.25, "ce": float("nan")}, "ok": True, "name": "x"}
    assert numbers(record) == {"loss": 1.5, "losses.kd": 0.25}
    assert numbers(record, skip=()) == {"epoch": 3.0, "loss": 1.5, "losses.kd": 0.25}
    assert flatten({"a": {"b": {"c": 1}}, "d": [1]}) == {"a.b.c": 1, "d": [1]}

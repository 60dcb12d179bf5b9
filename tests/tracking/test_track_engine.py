"""The engine feeds a run's trackers and keeps its run.log, through a stop and a resume."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from track_recorder import Recorder

from ekdcli.engine.loop import FitResult, fit
from ekdcli.engine.objective import CrossEntropyObjective
from ekdcli.engine.options import EngineOptions
from ekdcli.engine.recipe import Recipe
from ekdcli.engine.testing import TinyNet, synthetic_dataset
from ekdcli.engine.tracking import Tracking
from ekdcli.store import rundir

RECIPE = Recipe(epochs=3, batch_size=32, lr=0.1, milestones=(2,))  # 128 samples: 4 steps per epoch
CONFIG = 'data = "synthetic"\ntrack = ["recorder"]\n\n[train]\nmomentum = 0.9\n'


def run(run_dir: Path, tracking: Tracking, **kwargs) -> FitResult:  # noqa: ANN003
    torch.manual_seed(0)
    options = EngineOptions(device="cpu", precision="fp32", quiet=True, seed=7)
    data = synthetic_dataset(train=128, test=40)
    return fit(
        TinyNet(),
        data,
        CrossEntropyObjective(),
        RECIPE,
        options,
        run_dir,
        config_text=CONFIG,
        tracking=tracking,
        **kwargs,
    )


def test_trackers_get_the_config_and_every_epoch_record_once_across_a_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = Recorder()
    run(
        run_dir,
        Tracking([("recorder", first)], "train", tmp_path / "store", "http://nowhere"),
        stop_after_epoch=1,
    )
    assert first.kinds() == ["start", "log_epoch"]  # no energies in cross-entropy; the job finishes
    started = first.events[0][1]
    assert (started.name, started.run_dir, started.command) == ("run", run_dir, "train")
    assert (started.store, started.tracking_uri, started.resumed_after_epoch) == (
        tmp_path / "store",
        "http://nowhere",
        None,
    )
    assert started.config_text == CONFIG == (run_dir / "config.toml").read_text()
    assert started.config == {"data": "synthetic", "track": ["recorder"], "train": {"momentum": 0.9}}

    second = Recorder()
    run(run_dir, Tracking([("recorder", second)], "train"), resume=True)
    assert second.kinds() == ["start", "log_epoch", "log_epoch"]
    assert second.events[0][1].resumed_after_epoch == 1
    assert second.events[0][1].store == run_dir.parent  # no store given: the runs' folder
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    sent = [first.events[1][1], *(payload for _, payload in second.events[1:])]
    assert sent == records and [r["epoch"] for r in records] == [1, 2, 3]


def test_run_log_keeps_the_engine_lines_under_quiet_and_grows_on_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run(run_dir, Tracking(), stop_after_epoch=1)
    first = (run_dir / rundir.RUN_LOG).read_text().splitlines()
    assert first[0].startswith("training on cpu (fp32, ")
    assert first[1] == f"3 epochs x 4 steps, batch 32, lr 0.1 (step), run dir {run_dir}"
    assert len(first) == 3 and first[2].startswith("epoch 1/3  loss ")
    run(run_dir, Tracking(), resume=True)
    log = (run_dir / rundir.RUN_LOG).read_text().splitlines()
    assert log[:3] == first  # the first session's lines stay, the resumed one's follow
    assert log[3] == f"resuming {run_dir} after epoch 1"
    assert [line.split()[1] for line in log if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
    records = rundir.read_metrics(run_dir)
    assert log[-1].startswith(
        f"epoch 3/3  loss {records[-1]['loss']:.4f}  train {100 * records[-1]['train_top1']:.2f}%"
    )


def test_no_run_directory_means_no_tracking(tmp_path: Path) -> None:
    recorder = Recorder()
    torch.manual_seed(0)
    options = EngineOptions(device="cpu", precision="fp32", quiet=True, seed=7)
    fit(TinyNet(), synthetic_dataset(train=64, test=16), CrossEntropyObjective(), RECIPE, options, None,
        tracking=Tracking([("recorder", recorder)]), stop_after_epoch=1)  # fmt: skip
    assert recorder.kinds() == []

"""What fixes a campaign run's numbers is recorded and kept: CPU threads per run (fixed when the
campaign starts, the same whatever a later ``--jobs``), and a resumed run's device type,
precision and threads (its environment.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ekdcli.campaign.sweep import SweepRequest, prepare
from ekdcli.config import Config
from ekdcli.store import rundir
from ekdcli.util.errors import UsageError

PAIR = 'teacher = "resnet8"\nstudent = "tiny_cnn"\nmethod = "kd"\nepochs = 2\n'


def _plan(tmp_path: Path, **request: Any) -> Any:
    (tmp_path / "c.toml").write_text(PAIR)
    plan, _ = prepare(
        Config(store=str(tmp_path / "store")),
        SweepRequest(configs=[str(tmp_path / "c.toml")], name="c", **request),
    )
    return plan


def test_threads_per_run_are_recorded_and_kept_whatever_jobs(tmp_path: Path, ekd: Any) -> None:
    plan = _plan(tmp_path, jobs=2, cpus_per_run=3)
    assert plan.campaign.definition["threads"] == 3
    assert plan.runs[0].env == {"EKD_NUM_THREADS": "3", "OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    plan.campaign.dir.write_definition(plan.campaign.definition, {"c": PAIR})
    for jobs in (1, 4):  # a later sweep with another --jobs keeps the recorded count
        later = _plan(tmp_path, jobs=jobs)
        assert later.runs[0].env["EKD_NUM_THREADS"] == "3"
    with pytest.raises(
        UsageError, match=r"the campaign's runs use 3 CPU thread\(s\) each \(recorded when it started"
    ):
        _plan(tmp_path, jobs=1, cpus_per_run=2)
    code, out, err = ekd(
        "sweep", "--name", "c", "--jobs", "2", "--dry-run", "--store", str(tmp_path / "store")
    )
    assert code == 0, err
    assert "3 CPU thread(s) per run (recorded with the campaign: the same numbers whatever --jobs)" in out


def test_a_resumed_run_keeps_its_device_precision_and_threads(tmp_path: Path) -> None:
    plan = _plan(tmp_path, jobs=1, cpus_per_run=2)
    plan.campaign.dir.write_definition(plan.campaign.definition, {"c": PAIR})
    run_dir = plan.campaign.dir.run_dir("c-seed0")
    run_dir.mkdir(parents=True)
    (run_dir / rundir.CHECKPOINT).write_bytes(b"")
    environment = {"device": "cuda:1", "precision": "bf16", "num_threads": 5, "run_format": 2}
    (run_dir / rundir.ENVIRONMENT).write_text(json.dumps(environment))
    (item,) = _plan(tmp_path, jobs=2).runs
    assert item.action == "resume"
    assert item.args[-4:] == ["--device", "cuda", "--precision", "bf16"]
    assert item.env["EKD_NUM_THREADS"] == "5"  # the run's own record wins over the campaign's

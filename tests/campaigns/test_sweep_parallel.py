"""A campaign of DDP runs (``--nproc 2``, gloo on the CPU) through the local executor, and runs
stopped at their time limit retried automatically, while a config's own error is not retried."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TINY = 'model = "tiny_cnn"\nepochs = 1\nlimit_train = 64\nlimit_test = 32\ndevice = "cpu"\n'


def _sweep(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EKD_HOME"}
    command = [sys.executable, "-m", "ekdcli", "sweep", *args, "--store", str(folder / "store")]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def test_a_two_process_ddp_run_goes_through_the_local_executor(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(TINY)
    done = _sweep(tmp_path, "c.toml", "--nproc", "2", "--cpus-per-run", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = tmp_path / "store" / "runs" / "c.c-seed0"
    assert json.loads((run_dir / "summary.json").read_text())["world_size"] == 2
    definition = json.loads((tmp_path / "store" / "campaigns" / "c" / "campaign.json").read_text())
    assert definition["nproc"] == 2 and definition["threads"] == 2
    again = _sweep(tmp_path, "--name", "c", "--nproc", "1", "--dry-run")
    assert again.returncode == 2 and "runs each run as 2 process(es)" in again.stderr


def test_runs_over_their_time_limit_are_retried_and_a_configs_error_is_not(tmp_path: Path) -> None:
    (tmp_path / "slow.toml").write_text(TINY)
    (tmp_path / "bad.toml").write_text(TINY + 'data = "cifar100"\ndata_root = "/nonexistent/cifar100.npz"\n')
    done = _sweep(tmp_path, "slow.toml", "--time-limit", "0.005", "--retries", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    failed = _sweep(tmp_path, "bad.toml", "--retries", "2")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    campaigns = tmp_path / "store" / "campaigns"
    slow = json.loads((campaigns / "slow" / "state" / "slow-seed0.json").read_text())
    bad = json.loads((campaigns / "bad" / "state" / "bad-seed0.json").read_text())
    assert (slow["state"], slow["attempts"]) == ("failed", 3)  # the first try and 2 retries
    assert "stopped after its time limit of 0.005 min" in slow["error"]
    assert (bad["state"], bad["attempts"], bad["returncode"]) == ("failed", 1, 2)  # its config's fault
    assert done.stdout.count("slow-seed0: stopped after its time limit of 0.005 min; it will be retried") == 2

"""The executors' scheduling: tasks of ``--nproc P`` processes get ``P`` GPUs (local, ray, slurm),
time limits and retries, Ray's fast refusal of an address with no cluster, and the ``slurm``
executor on submitit: its batch script, its local cluster, and a preempted task requeued from its
checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ekdcli.sdk.contracts import ExecTask, TaskOutcome
from ekdcli.sdk.plugins import registry
from ekdcli.util.errors import UsageError


def test_the_local_executor_gives_a_task_of_p_processes_p_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    from ekd_plugins.executors import local

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    executor = local.LocalExecutor(jobs=3)
    pair = [ExecTask("a", [], "a.log", processes=2)]
    assert executor.slots(pair) == 2  # 4 GPUs hold two 2-GPU tasks, whatever --jobs
    assert [executor.slot_env(s, 2)["CUDA_VISIBLE_DEVICES"] for s in range(2)] == ["0,1", "2,3"]
    assert executor.slots([ExecTask("b", [], "b.log")]) == 3
    with pytest.raises(
        UsageError, match=r"a task runs 5 processes, one GPU each, but this machine has 4 GPU"
    ):
        executor.slots([ExecTask("c", [], "c.log", processes=5)])


def test_a_continued_task_resumes_from_its_checkpoint_once_it_has_one(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    task = ExecTask("r", ["train", "--config", "c.toml"], "r.log", resume_args=["train", "--resume", "d"],
                    checkpoint=str(checkpoint))  # fmt: skip
    assert task.continued().args == ["train", "--config", "c.toml"]  # nothing saved yet: start again
    checkpoint.write_bytes(b"")
    assert task.continued().args == ["train", "--resume", "d"]


def test_ray_refuses_an_address_with_nothing_behind_it_in_seconds(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    (tmp_path / "c.toml").write_text('model = "tiny_cnn"\nepochs = 1\n')
    env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:1"}
    env.pop("EKD_HOME", None)
    command = [
        sys.executable,
        "-m",
        "ekdcli",
        "sweep",
        "c.toml",
        "--executor",
        "ray",
        "--store",
        str(tmp_path / "s"),
    ]
    start = time.monotonic()
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - start < 60
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "error: no Ray cluster answers at 127.0.0.1:1 (Connection refused); start one there ('ray start --head'), "
        "or give the right --ray-address / RAY_ADDRESS, or run with --executor local."
    ]
    assert not (tmp_path / "s").exists()  # refused before the campaign folder is written


def test_executor_options_and_limits_reach_the_executor_or_are_refused(tmp_path: Path, ekd: Any) -> None:
    (tmp_path / "c.toml").write_text('model = "tiny_cnn"\nepochs = 1\n')
    code, _, err = ekd("sweep", "c.toml", "--executor-option", "nope=1", "--dry-run")
    assert code == 2 and "executor 'local' takes KEY=VALUE with KEY one of: time_limit" in err
    code, _, err = ekd("sweep", "c.toml", "--executor", "ray", "--time-limit", "5", "--dry-run")
    assert code == 2 and "--time-limit applies to --executor local or slurm, not to 'ray'" in err
    code, _, err = ekd("sweep", "c.toml", "--executor", "slurm", "--store", str(tmp_path / "s"), "--dry-run")
    assert code == 2 and "the slurm executor submits with sbatch, which is not on this machine's PATH" in err
    code, out, err = ekd("sweep", "c.toml", "--executor", "slurm", "--executor-option", "cluster=local",
                         "--executor-option", "partition=gpu", "--nproc", "2", "--store", str(tmp_path / "s"), "--dry-run")  # fmt: skip
    assert code == 0, err
    assert (
        "executor: slurm: one job per run, up to 1 at once on partition gpu (run locally through submitit)"
        in out
    )


def _fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``sbatch`` and ``srun`` that only keep the batch script (no cluster needed)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\ncp "$1" {tmp_path}/script.sh\necho "Submitted batch job 42"\n'
    )
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "script.sh"


@pytest.mark.parametrize("array", [False, True])
def test_the_batch_script_asks_slurm_for_what_the_task_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, array: bool
) -> None:
    pytest.importorskip("submitit")
    script = _fake_slurm(tmp_path, monkeypatch)
    executor = registry("executors").get("slurm").build(
        jobs=3, partition="gpu", account="abc", time_limit=90, cpus_per_run=4, mem="32G",
        setup=["module load cuda"], array=array,
    )  # fmt: skip
    executor.check()
    tasks = [ExecTask(k, ["--version"], str(tmp_path / f"{k}.log"), processes=2) for k in ("a", "b")]
    submitted = executor.submit(tasks if array else tasks[:1], tmp_path / "submitit")
    assert [job.job_id.split("_")[0] for job, _ in submitted] == ["42"] * len(submitted)
    lines = script.read_text().splitlines()
    for wanted in ("--partition=gpu", "--account=abc", "--time=90", "--gpus-per-node=2", "--cpus-per-task=8",
                   "--mem=32G", "--signal=USR2@90", "--nodes=1", "--ntasks-per-node=1"):  # fmt: skip
        assert f"#SBATCH {wanted}" in lines, wanted
    assert "module load cuda" in lines
    assert ("#SBATCH --array=0-1%2" in lines) == array  # 2 tasks, at most --jobs (3) at once


def test_a_preempted_task_stops_its_process_and_is_requeued_from_its_checkpoint(tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    from ekd_plugins.executors.slurm import SlurmTask

    checkpoint = tmp_path / "checkpoint.pt"
    task = ExecTask("r", ["train", "--config", "c.toml"], str(tmp_path / "r.log"),
                    resume_args=["train", "--resume", "d"], checkpoint=str(checkpoint))  # fmt: skip
    job = SlurmTask(task, {})
    job._process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    checkpoint.write_bytes(b"")  # the stopped run saved its checkpoint
    delayed = job.checkpoint()
    assert job._process.returncode is not None  # asked to stop (Ctrl-C) before the requeue
    assert delayed.function.task.args == ["train", "--resume", "d"]
    assert json.dumps(job.__getstate__()["_process"]) == "null"  # a job pickles without its process


@pytest.mark.slow
def test_the_slurm_executor_runs_tasks_on_submitits_local_cluster(tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    executor = registry("executors").get("slurm").build(jobs=2, cluster="local")
    tasks = [
        ExecTask("ok", ["--version"], str(tmp_path / "ok.log")),
        ExecTask("bad", ["list", "modles"], str(tmp_path / "bad.log")),
    ]
    started: list[str] = []
    outcomes: dict[str, TaskOutcome] = {}
    executor.run(tasks, lambda t: started.append(t.key), lambda t, o: outcomes.__setitem__(t.key, o))
    assert sorted(started) == ["bad", "ok"]
    assert outcomes["ok"].ok and "ekd" in (tmp_path / "ok.log").read_text()
    assert outcomes["bad"].returncode == 2 and "modles" in outcomes["bad"].error

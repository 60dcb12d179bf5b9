"""``ekd sweep`` end to end: a 2-config x 2-seed campaign on the digits data with ``--jobs 2``, a second
sweep that does nothing, kill -9 of the sweep and a re-run with bitwise-equal weights, the Ray
executor, and failed runs (never stopping the others, retried only when asked)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from campaign_helpers import CONFIGS, NAME, RUNS, Reference, sweep, sweep_command

from ekdcli.store import rundir
from ekdcli.store.weights import load_tensors

pytestmark = pytest.mark.slow


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_tensors(path)[0]


def assert_same_weights(reference: Reference, store: Path) -> None:
    """Every run's final (last) and best weights equal the reference campaign's, tensor by tensor."""
    for run in RUNS:
        for which in ("last", "best"):
            ours = _tensors(reference.run_dir(store, run) / f"{which}.safetensors")
            theirs = _tensors(reference.run_dir(reference.store, run) / f"{which}.safetensors")
            assert ours.keys() == theirs.keys()
            assert all(torch.equal(ours[k], theirs[k]) for k in ours), f"{run} {which} differs"


def _store_with_prerequisites(reference: Reference, store: Path) -> None:
    """A new store holding the reference's teacher and scores (so only the runs are compared)."""
    for part in ("models", "scores"):
        shutil.copytree(reference.store / part, store / part)


def test_the_campaign_records_its_definition_states_and_runs(reference: Reference) -> None:
    campaign = reference.store / "campaigns" / NAME
    definition = json.loads((campaign / "campaign.json").read_text())
    assert definition["seeds"] == [0, 1] and [c["stem"] for c in definition["configs"]] == ["kd", "he_cutmix"]
    assert (campaign / "configs" / "he_cutmix.toml").read_text() == CONFIGS["he_cutmix"]
    for run in RUNS:
        state = json.loads((campaign / "state" / f"{run}.json").read_text())
        assert (state["state"], state["attempts"]) == ("done", 1)
        run_dir = reference.run_dir(reference.store, run)
        assert rundir.is_finished(run_dir)
        config = rundir.read_config(run_dir)
        assert config["seed"] == int(run[-1]) and config["run_name"] == f"{NAME}.{run}"
        assert "===" in (campaign / "logs" / f"{run}.log").read_text()
    mixed = rundir.read_summary(reference.run_dir(reference.store, "he_cutmix-seed1"))
    assert mixed is not None and mixed["objective"]["augmentation"]["rate"] == 0.5
    seed0 = _tensors(reference.run_dir(reference.store, "kd-seed0") / "last.safetensors")
    seed1 = _tensors(reference.run_dir(reference.store, "kd-seed1") / "last.safetensors")
    assert any(not torch.equal(seed0[k], seed1[k]) for k in seed0)  # the seeds are different runs
    # the teacher and its scores: built once each, before every run
    out = reference.output
    assert out.count("building teacher resnet56 on digits") == 1 and out.count("building scores") == 1
    assert out.index("built scores") < out.index("started  kd-seed0")
    assert (reference.store / "models" / "digits" / "resnet56.safetensors").is_file()
    assert len(list((reference.store / "runs").glob(f"{NAME}.teacher-*"))) == 1


def test_a_second_sweep_does_no_training(reference: Reference) -> None:
    files = [p for p in (reference.store / "runs").rglob("*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in files}
    logs = reference.store / "campaigns" / NAME / "logs"
    logs_before = {p.name: p.read_text() for p in logs.iterdir()}
    again = sweep(reference.folder, reference.store, "--jobs", "2")
    assert again.returncode == 0, again.stderr
    assert "0 run(s) to do (0 resumed from a checkpoint), 4 already done" in again.stdout
    assert "0 prerequisite(s) to build" in again.stdout and "started" not in again.stdout
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert {p.name: p.read_text() for p in logs.iterdir()} == logs_before


def _mid_way(store: Path, sweep_process: subprocess.Popen[bytes]) -> str:
    """Wait until a run has a checkpoint but no summary (trained epoch 1 of 2); its name."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        for run in RUNS:
            run_dir = store / "runs" / f"{NAME}.{run}"
            if (run_dir / rundir.CHECKPOINT).is_file() and not (run_dir / rundir.SUMMARY).is_file():
                return run
        assert sweep_process.poll() is None, "the sweep ended before a run was half-way"
        time.sleep(0.02)
    raise AssertionError("no run reached half-way in 600 s")


def _processes_using(store: Path) -> list[int]:
    """PIDs whose command line names the store (the sweep's runs)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and proc.name != str(os.getpid()):
            try:
                if str(store).encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_kill_9_mid_campaign_then_a_rerun_with_other_jobs_gives_bitwise_equal_weights(
    reference: Reference, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    _store_with_prerequisites(reference, store)
    env = {k: v for k, v in os.environ.items() if k != "EKD_HOME"}
    command = sweep_command(reference.folder, store, "--jobs", "2")
    process = subprocess.Popen(
        command, cwd=reference.folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    half = _mid_way(store, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if sys.platform.startswith("linux"):  # the runs die with the sweep (parent-death signal)
        deadline = time.monotonic() + 30
        while _processes_using(store) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _processes_using(store) == []
    assert not rundir.is_finished(store / "runs" / f"{NAME}.{half}")
    status = subprocess.run(
        [sys.executable, "-m", "ekdcli", "sweep", "--status", NAME, "--store", str(store), "--json"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    states = {r["run"]: r["state"] for r in json.loads(status.stdout)["runs"]}
    assert states[half] == "running" and json.loads(status.stdout)["sweep_pid"] is None
    # one state file per run from the start (pending ones included)
    assert sorted(p.stem for p in (store / "campaigns" / NAME / "state").iterdir()) == sorted(RUNS)
    # another --jobs: the runs keep the CPU threads the campaign recorded, so the weights stay bitwise
    again = sweep(reference.folder, store, "--jobs", "1")
    assert again.returncode == 0, again.stdout + again.stderr
    assert re.search(rf"^  {half} +resume +from epoch [12]$", again.stdout, re.M), again.stdout
    assert_same_weights(reference, store)


def test_another_jobs_with_the_same_threads_per_run_gives_bitwise_equal_weights(
    reference: Reference, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    _store_with_prerequisites(reference, store)
    threads = json.loads((reference.store / "campaigns" / NAME / "campaign.json").read_text())["threads"]
    done = sweep(reference.folder, store, "--jobs", "1", "--cpus-per-run", str(threads))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{threads} CPU thread(s) per run" in done.stdout
    assert_same_weights(reference, store)  # --jobs 2 (the reference) and --jobs 1: the same weights


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Ray is not installed (pip install 'ekd[ray]'; make install's test extra installs it)",
)
def test_the_ray_executor_on_a_local_runtime_gives_bitwise_equal_weights(
    reference: Reference, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    _store_with_prerequisites(reference, store)
    done = sweep(reference.folder, store, "--jobs", "2", "--executor", "ray")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ray: up to 2 runs at once on a local Ray runtime" in done.stdout
    assert "Started a local Ray instance" not in done.stdout + done.stderr  # Ray's lines: only with --verbose
    assert_same_weights(reference, store)


GOOD = 'method = "ce"\nstudent = "tiny_cnn"\nteacher = "tiny_cnn"\nepochs = 1\nlimit_train = 64\nlimit_test = 32\n'
BAD = GOOD + 'data = "cifar100"\ndata_root = "/nonexistent/cifar100.npz"\n'


def test_a_failed_run_never_stops_the_others_and_is_retried_only_when_asked(tmp_path: Path) -> None:
    (tmp_path / "good.toml").write_text(GOOD)
    (tmp_path / "bad.toml").write_text(BAD)
    env = {k: v for k, v in os.environ.items() if k != "EKD_HOME"}
    base = [sys.executable, "-m", "ekdcli", "sweep", "--name", "fails", "--store", str(tmp_path / "store")]
    first = subprocess.run(
        [*base, "bad.toml", "good.toml"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 1
    error = first.stderr.strip().splitlines()[-1]
    assert (
        error.startswith("error: 1 of 2 runs of campaign 'fails' failed (bad-seed0)")
        and "--retry-failed" in error
    )
    campaign = tmp_path / "store" / "campaigns" / "fails"
    bad = json.loads((campaign / "state" / "bad-seed0.json").read_text())
    assert bad["state"] == "failed" and "/nonexistent/cifar100.npz" in bad["error"] and bad["attempts"] == 1
    assert json.loads((campaign / "state" / "good-seed0.json").read_text())["state"] == "done"
    assert sorted(p.name for p in (campaign / "state").iterdir()) == ["bad-seed0.json", "good-seed0.json"]

    skipped = subprocess.run([*base], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert (
        skipped.returncode == 1 and "bad-seed0   failed (skipped; --retry-failed runs it)" in skipped.stdout
    )
    assert (campaign / "logs" / "bad-seed0.log").read_text().count("=== ") == 1

    retried = subprocess.run(
        [*base, "--retry-failed"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert retried.returncode == 1 and "started  bad-seed0" in retried.stdout
    assert "started  good-seed0" not in retried.stdout  # done: skipped
    assert json.loads((campaign / "state" / "bad-seed0.json").read_text())["attempts"] == 2
    assert (campaign / "logs" / "bad-seed0.log").read_text().count("=== ") == 2

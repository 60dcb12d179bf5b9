"""Real concurrency: two ekd processes on one run directory or store file, and kill -9 mid-run.

Each test starts a long run, waits until it holds its lock (or has a checkpoint), starts a second
process against it, then kills the first with SIGKILL and lets ``--resume`` finish the run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from rel_helpers import DATA, TEACHER, ekd_process, one_line_error

from ekdcli.store.weights import load_tensors, read_metadata

pytestmark = pytest.mark.slow

# long enough to be alive while other processes start (it is killed long before it ends)
LONG = ("--epochs", "100000", "--limit-train", "32", "--limit-test", "16", "--batch-size", "16", "--quiet")
DISTILL = ("distill", "--teacher", "tiny_cnn", "--student", "tiny_cnn", *DATA)


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"the first process ended early ({process.returncode}): {process.communicate()[1]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} did not appear within {timeout} s")
        time.sleep(0.1)


def finish(process: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def leftovers(store: Path) -> list[str]:
    """Locks and temporary files: ekd's own (``.tmp``) and any library's (``.tmpXXXXXX``)."""
    return sorted(
        str(p.relative_to(store))
        for p in store.rglob("*")
        if p.suffix in (".lock", ".tmp") or p.name.startswith(".tmp")
    )


def test_a_live_run_refuses_a_second_writer_and_resume_then_kill_9_and_resume_finish_it(store: Path) -> None:
    run = store / "runs" / "same"
    first = ekd_process(*DISTILL, "--run-name", "same", "--seed", "1", *LONG)
    try:
        wait_for(run / "checkpoint.pt", first)
        holder = f"is being written by process {first.pid} "
        second = ekd_process(*DISTILL, "--run-name", "same", "--seed", "2", *LONG)
        code, out, err = finish(second)
        one_line_error(code, err, 2, f"run {run}", holder)
        resumed = ekd_process("distill", "--resume", str(run), "--quiet")
        code, out, err = finish(resumed)
        one_line_error(code, err, 2, holder, "stop it first")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (store / "runs" / ".same.lock").is_file()  # what kill -9 leaves: a lock nobody holds
    epochs = len((run / "metrics.jsonl").read_text().splitlines())
    # --resume takes the dead process's lock over; --epochs may change on resume: finish soon
    code, out, err = finish(
        ekd_process("distill", "--resume", str(run), "--epochs", str(epochs + 2), "--quiet")
    )
    assert code == 0, err
    assert "seed = 1\n" in (run / "config.toml").read_text()  # one run's files, never a mix
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, epochs + 3))
    assert json.loads((run / "summary.json").read_text())["epochs"] == epochs + 2
    assert leftovers(store) == []


def test_kill_9_of_train_keeps_the_good_store_file_and_resume_replaces_it(store: Path) -> None:
    good = (store / TEACHER).read_bytes()
    first = ekd_process("train", "--model", "tiny_cnn", *DATA, "--run-name", "k", *LONG)
    run = store / "runs" / "k"
    try:
        wait_for(run / "checkpoint.pt", first)
        code, out, err = finish(ekd_process("train", "--model", "tiny_cnn", *DATA, *LONG))
        one_line_error(code, err, 2, f"{store / TEACHER} is being written by process {first.pid}")
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    assert (store / TEACHER).read_bytes() == good  # the killed run never wrote the store file
    assert (store / TEACHER).with_name(".tiny_cnn.safetensors.lock").is_file()  # its lock, held by nobody
    epochs = len((run / "metrics.jsonl").read_text().splitlines())
    code, out, err = finish(
        ekd_process("train", "--resume", str(run), "--epochs", str(epochs + 1), "--quiet")
    )
    assert code == 0, err
    assert (store / TEACHER).read_bytes() != good  # now it is replaced, once, by the finished run
    meta = read_metadata(store / TEACHER)  # the name and epoch the original command would store
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = max(history, key=lambda r: r["test_top1"])  # the first of equal maxima
    assert (meta["kept"], int(meta["epoch"]), int(meta["epochs"])) == ("best", best["epoch"], epochs + 1)
    assert leftovers(store) == []


def test_kill_9_then_resume_stores_under_the_original_name_with_the_last_epoch(store: Path) -> None:
    """``--name mine --keep last``, killed, resumed without them: mine.safetensors holds the last epoch."""
    good = (store / TEACHER).read_bytes()
    args = ("train", "--model", "tiny_cnn", *DATA, "--run-name", "n", "--name", "mine", "--keep", "last")
    first = ekd_process(*args, *LONG)
    run = store / "runs" / "n"
    try:
        wait_for(run / "checkpoint.pt", first)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    epochs = len((run / "metrics.jsonl").read_text().splitlines())
    code, out, err = finish(
        ekd_process("train", "--resume", str(run), "--epochs", str(epochs + 1), "--quiet")
    )
    assert code == 0, err
    mine = store / "models" / "fake" / "mine.safetensors"
    meta = read_metadata(mine)
    assert (meta["store_name"], meta["kept"], int(meta["epoch"])) == ("mine", "last", epochs + 1)
    last, _ = load_tensors(run / "last.safetensors")
    stored, _ = load_tensors(mine)
    assert all(torch.equal(last[k], stored[k]) for k in last)
    assert (store / TEACHER).read_bytes() == good  # the architecture's file: never touched
    assert leftovers(store) == []


def test_two_dated_runs_started_together_get_two_directories(store: Path) -> None:
    args = (
        "train",
        "--model",
        "tiny_cnn",
        *DATA,
        "--epochs",
        "2",
        "--limit-train",
        "32",
        "--quiet",
        "--json",
    )
    before = {p.name for p in (store / "runs").iterdir()}
    first = ekd_process(*args, "--name", "twin1", "--seed", "1")
    second = ekd_process(*args, "--name", "twin2", "--seed", "2")
    results = [finish(first), finish(second)]
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    dirs = {Path(json.loads(out)["run_dir"]) for _, out, _ in results}
    assert len(dirs) == 2 and {p.name for p in (store / "runs").iterdir()} - before == {d.name for d in dirs}
    seeds = sorted((d / "config.toml").read_text().split("seed = ")[1].split("\n")[0] for d in dirs)
    assert seeds == ["1", "2"]  # each directory holds one run's files
    assert leftovers(store) == []

"""Locks, exclusive run directories and the sweeping of what killed writers leave behind.

flock locks conflict between two open files even inside one process, so a lock this test holds
stands for another live writer; the two-process versions are in test_rel_processes.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from rel_helpers import DATA, SCORES, dead_pid, snapshot

from ekdcli.store.atomic import _host_tag, atomic_write, atomic_write_text, sweep_stale_temps
from ekdcli.store.layout import Store
from ekdcli.store.locks import FileLock, lock_for, sweep_stale_locks
from ekdcli.store.weights import save_tensors
from ekdcli.util.errors import JobError, UsageError


def test_a_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    target = tmp_path / "models" / "x.safetensors"
    with FileLock(lock_for(target), str(target), hint="wait for it") as first:
        assert first.path == tmp_path / "models" / ".x.safetensors.lock"
        assert first.path.read_text().split()[0] == str(os.getpid())
        with pytest.raises(UsageError) as err:
            FileLock(lock_for(target), str(target), hint="wait for it").acquire()
        assert err.value.message == (
            f"{target} is being written by process {os.getpid()} ({first.path}); wait for it."
        )
        with pytest.raises(UsageError, match=f"process {os.getpid()}"):
            FileLock(lock_for(target), str(target)).ensure_free()  # the probe says the same
    assert not first.path.exists()  # released: the lock file goes with it
    FileLock(lock_for(target), str(target)).ensure_free()  # nobody holds it now
    assert not first.path.exists()  # and the probe created nothing


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    pid = dead_pid()
    stale = tmp_path / ".run.lock"
    stale.write_text(f"{pid} somehost\n")  # what kill -9 leaves: the file, no lock (the kernel dropped it)
    FileLock(stale, "run").ensure_free()  # a dead holder holds nothing
    with FileLock(stale, "run") as lock:
        assert lock.taken_over == pid
        assert stale.read_text().split()[0] == str(os.getpid())
    assert not stale.exists()


def test_a_holder_sweeps_the_lock_files_of_dead_processes_beside_it(tmp_path: Path) -> None:
    for name in (".a.lock", ".b.safetensors.lock"):
        (tmp_path / name).write_text(f"{dead_pid()} host\n")
    live = FileLock(tmp_path / ".live.lock", "live").acquire()
    try:
        with FileLock(tmp_path / ".mine.lock", "mine"):
            assert sorted(p.name for p in tmp_path.iterdir()) == [".live.lock", ".mine.lock"]
        assert sweep_stale_locks(tmp_path) == []  # the live one stays
        assert (tmp_path / ".live.lock").exists()
    finally:
        live.release()


def test_a_waiting_writer_gets_the_lock_when_the_holder_lets_go(tmp_path: Path) -> None:
    path = tmp_path / ".scores.lock"
    holder = FileLock(path, "scores").acquire()
    told: list[str] = []

    def waiting(who: str) -> None:
        told.append(who)
        holder.release()  # the holder finishes while the other one waits

    with FileLock(path, "scores", wait=30, on_wait=waiting) as waiter:
        assert waiter.fd is not None and path.read_text().split()[0] == str(os.getpid())
    assert told == [f"process {os.getpid()}"]


def test_a_wait_that_runs_out_is_refused(tmp_path: Path) -> None:
    path = tmp_path / ".scores.lock"
    with (
        FileLock(path, "the scores"),
        pytest.raises(UsageError, match="the scores is being written by process"),
    ):
        FileLock(path, "the scores", wait=0.3).acquire()


def test_dated_run_directories_started_in_the_same_second_never_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20250101-120000")
    store = Store(tmp_path)
    with store.claim_run(None, "train") as first, store.claim_run(None, "train") as second:
        assert first.path.name == "train-20250101-120000"
        assert second.path.name == "train-20250101-120000-2"
        (second.path / "config.toml").write_text("")
    assert not first.path.exists()  # empty: removed on release
    assert second.path.is_dir()  # it holds a file: kept
    with store.claim_run(None, "train") as third:
        assert third.path.name == "train-20250101-120000"


def test_a_named_run_that_is_live_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.claim_run("exp", "train") as claim:
        (claim.path / "config.toml").write_text("")
        for attempt in (
            lambda: store.claim_run("exp", "train"),
            lambda: store.check_run_target("exp"),
        ):
            with pytest.raises(
                UsageError, match=rf"run {claim.path} is being written by process {os.getpid()}"
            ):
                attempt()
    with store.claim_run("exp", "train"):  # released: free again
        pass


def test_resume_checks_come_before_the_lock(tmp_path: Path) -> None:
    store = Store(tmp_path)
    (tmp_path / "runs" / "r").mkdir(parents=True)
    with pytest.raises(UsageError, match="holds no checkpoint.pt"):
        store.claim_run(None, "train", resume=tmp_path / "runs" / "r")
    assert not (tmp_path / "runs" / ".r.lock").exists()


# ----------------------------------------------------------------------------------- temp files
def test_temp_files_of_dead_writers_are_swept_by_the_next_write(tmp_path: Path) -> None:
    host = _host_tag()
    dead, live = dead_pid(), os.getpid()
    left = {
        f".last.safetensors.ekd-{host}-{dead}-abc123.tmp": b"",  # zero-byte: killed before writing
        f".best.safetensors.ekd-{host}-{dead}-x_y_z9.tmp": b"partial",  # killed while writing
    }
    kept = {
        f".config.toml.ekd-{host}-{live}-abcdef.tmp": b"",  # a live writer's: never touched
        f".config.toml.ekd-otherhost-{dead}-abcdef.tmp": b"",  # another machine's (shared disk)
        "notes.tmp": b"mine",  # not ekd's
    }
    for name, data in {**left, **kept}.items():
        (tmp_path / name).write_bytes(data)
    atomic_write_text(tmp_path / "config.toml", "x = 1\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["config.toml", *kept])
    assert sweep_stale_temps(tmp_path) == []


def test_a_failed_write_leaves_no_temp_file_and_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "w.safetensors"
    save_tensors(target, {"w": torch.ones(2)})
    before = snapshot(tmp_path)

    def explode(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(JobError, match=r"could not write .* \(No space left on device\); free some space"):
        atomic_write(target, explode)
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------------- via the CLI
def test_train_takes_over_a_killed_writers_locks_and_cleans_up(store: Path, ekd: Any) -> None:
    pid = dead_pid()
    host = _host_tag()
    models = store / "models" / "fake"
    (models / ".tiny_cnn.safetensors.lock").write_text(f"{pid} host\n")
    (models / f".tiny_cnn.safetensors.ekd-{host}-{pid}-qwerty.tmp").write_bytes(b"")
    (store / "runs" / ".stale.lock").write_text(f"{pid} host\n")
    code, out, err = ekd(
        "train", "--model", "tiny_cnn", *DATA, "--epochs", "1", "--limit-train", "32", "--quiet"
    )
    assert code == 0, err
    assert sorted(p.name for p in models.iterdir()) == ["tiny_cnn.safetensors"]
    assert not [p for p in store.rglob(".*") if p.suffix in (".lock", ".tmp")]


def test_a_second_scorer_waits_for_the_first_then_reuses_its_file(
    store: Path, ekd: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ekdcli.jobs.console import Console

    path = store / SCORES
    holder = FileLock(lock_for(path), "test").acquire()  # a scorer at work (this process)
    say = Console.say

    def say_then_finish_the_other_scorer(self: Console, message: str = "") -> None:
        say(self, message)
        if message.startswith("waiting for"):  # the second scorer waits: let the first one finish
            holder.release()

    monkeypatch.setattr(Console, "say", say_then_finish_the_other_scorer)
    try:
        code, out, err = ekd("score", "--teacher", "tiny_cnn", *DATA)
    finally:
        holder.release()
    assert code == 0, err
    assert f"waiting for process {os.getpid()}, which is scoring into {path}" in out
    assert f"reusing {path}" in out
    assert not lock_for(path).exists()


def test_teacher_cache_creation_waits_for_the_process_creating_it(tmp_path: Path) -> None:
    from ekdcli.method.teacher_cache import TeacherCache, build_key
    from ekdcli.sdk.plugins import registry

    dataset = registry("datasets").get("fake").build(None, n_train=8, n_test=4)
    key = build_key(dataset, "0" * 64, "fp32", "float32")
    directory = tmp_path / "cache"
    holder = FileLock(lock_for(directory / key.stem), "test").acquire()  # another process creating it
    said: list[str] = []

    def say(message: str) -> None:
        said.append(message)
        if message.startswith("waiting for"):
            holder.release()  # the creator finishes while this one waits

    try:
        cache = TeacherCache.open(directory, key, say=say)
    finally:
        holder.release()
    assert said[0] == f"waiting for process {os.getpid()}, which is creating {directory}"
    assert said[1].startswith(f"teacher cache {directory} created")
    assert cache.filled_count() == 0
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [f"{key.stem}.json", f"{key.stem}.logits.npy", f"{key.stem}.filled.npy"]
    )

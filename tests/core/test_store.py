"""Safetensors round trips, atomic writes and name resolution in the store."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from ekdcli.store.atomic import atomic_write, atomic_write_text
from ekdcli.store.layout import Store, safe_name
from ekdcli.store.weights import load_tensors, meta_value, save_tensors
from ekdcli.util.errors import UsageError


def test_safetensors_round_trip_with_metadata(tmp_path: Path) -> None:
    tensors = {"conv1.weight": torch.randn(4, 3, 3, 3), "bn1.num_batches_tracked": torch.tensor(5)}
    path = save_tensors(
        tmp_path / "w.safetensors", tensors, {"arch": "resnet20", "num_classes": 100, "acc": 0.5}
    )
    loaded, meta = load_tensors(path)
    assert set(loaded) == set(tensors)
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert (
        meta["arch"] == "resnet20"
        and meta_value(meta, "num_classes") == 100
        and meta_value(meta, "acc") == 0.5
    )


def test_failed_write_leaves_the_old_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    atomic_write_text(target, "good")

    def half_then_crash(tmp: str) -> None:
        Path(tmp).write_text("half-writ")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_crash)
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temp file left behind


def test_failed_safetensors_write_leaves_the_old_weights_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    target = save_tensors(tmp_path / "w.safetensors", {"w": torch.ones(3)}, {"arch": "old"})
    before = target.read_bytes()

    real_write = Path.write_bytes

    def half_written(self: Path, data: bytes) -> int:
        real_write(self, data[: len(data) // 2])  # the crash comes mid-file
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", half_written)
    with pytest.raises(OSError, match="disk full"):
        save_tensors(target, {"w": torch.zeros(3)}, {"arch": "new"})
    assert target.read_bytes() == before
    tensors, meta = load_tensors(target)
    assert torch.equal(tensors["w"], torch.ones(3)) and meta["arch"] == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temp file left


def test_atomic_writes_get_normal_permissions(tmp_path: Path) -> None:
    umask = os.umask(0)  # read this process's umask ...
    os.umask(umask)  # ... and put it back
    new = atomic_write_text(tmp_path / "new.txt", "x")
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~umask  # what open() gives, not mkstemp's 0600
    kept = tmp_path / "kept.txt"
    kept.write_text("old")
    kept.chmod(0o640)
    atomic_write_text(kept, "new")  # a replaced file keeps its permissions
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_text() == "new"


def test_corrupt_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(UsageError, match="not a readable safetensors file"):
        load_tensors(bad)
    with pytest.raises(UsageError, match="no weights file"):
        load_tensors(tmp_path / "missing.safetensors")


def test_resolution_by_name_path_and_missing(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    path = save_tensors(store.model_path("cifar100", "wrn_40_2"), {"w": torch.zeros(1)})
    assert path == tmp_path / "store/models/cifar100/wrn_40_2.safetensors"
    assert store.find_weights("wrn40_2", "cifar100", canonical="wrn_40_2") == path
    assert store.find_weights(str(path), "other") == path
    with pytest.raises(UsageError) as err:
        store.require_weights("resnet56", "cifar100", "resnet56", "teacher")
    message = err.value.message
    assert "models/cifar100/resnet56.safetensors" in message
    assert "ekd train --model resnet56 --data cifar100" in message and "ekd import" in message


def test_run_dirs_never_overwrite_a_finished_run(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.claim_run("exp", "distill") as claim:
        first = claim.path
        (first / "summary.json").write_text("{}")
    with pytest.raises(UsageError, match="already exists"):
        store.claim_run("exp", "distill")
    with store.claim_run(None, "distill") as dated:
        assert dated.path.name.startswith("distill-") and dated.path.is_dir()
    assert not dated.path.exists()  # nothing was written into it: released, it is gone
    assert safe_name("timm/resnet18") == "timm_resnet18"

"""CIFAR-100/10 from the shared npz files and from torchvision's pickle layout written here."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from ekd_plugins.datasets.cifar import cifar10, cifar100, read_cifar_pickle

from ekdcli.util.errors import UsageError

DATA = Path(os.environ.get("EKD_SHARED_DATA", "/work/shared/data"))
TINY100 = DATA / "tiny_cifar100.npz"
TINY10 = DATA / "tiny_cifar10_lossless.npz"
needs_tiny = pytest.mark.skipif(
    not TINY100.exists() or not TINY10.exists(), reason="shared tiny CIFAR npz absent"
)

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]


class _Py2Array:
    """Pickles an array as Python 2 numpy did (raw bytes as a latin-1 ``str``), like the real archives."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = np.ascontiguousarray(array)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        raw = self.array.tobytes().decode("latin1")
        return (_reconstruct, (np.ndarray, (0,), "b"), (1, self.array.shape, self.array.dtype, False, raw))


def _dump(path: Path, obj: dict) -> None:
    blob = pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path.write_bytes(blob)


def _rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar100(root: Path, n_train: int = 6, n_test: int = 4) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    train, test = _rows(n_train, 1), _rows(n_test, 2)
    y_train, y_test = [(7 * i) % 100 for i in range(n_train)], [99 - i for i in range(n_test)]
    names = [f"fine{i}" for i in range(100)]
    _dump(
        folder / "train", {"data": _Py2Array(train), "fine_labels": y_train, "coarse_labels": [0] * n_train}
    )
    _dump(folder / "test", {"data": _Py2Array(test), "fine_labels": y_test, "coarse_labels": [0] * n_test})
    _dump(folder / "meta", {"fine_label_names": names, "coarse_label_names": ["c"] * 20})
    return {"train": train, "test": test, "y_train": y_train, "y_test": y_test, "names": names}


def write_cifar10(root: Path) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = [_rows(2, 10 + i) for i in range(5)]
    labels = [[i, 9 - i] for i in range(5)]
    for i, (rows, y) in enumerate(zip(batches, labels, strict=True), start=1):
        # Python 3 style: bytes keys and values, as `pickle.load(..., encoding="bytes")` users write them
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps({b"data": rows, b"labels": y}, protocol=4))
    test = _rows(3, 20)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": test, b"labels": [4, 5, 6]}))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [n.encode() for n in names]}))
    return {"train": np.concatenate(batches), "y_train": sum(labels, []), "test": test, "names": names}


@needs_tiny
def test_tiny_npz_loads_as_nchw_uint8() -> None:
    ds = cifar100(str(TINY100))
    raw = np.load(TINY100)
    assert ds.name == "cifar100" and ds.num_classes == 100
    assert ds.train_images.shape == (1000, 3, 32, 32) and ds.test_images.shape == (200, 3, 32, 32)
    assert ds.train_images.dtype == torch.uint8 and ds.train_images.is_contiguous()
    assert ds.train_labels.dtype == torch.int64 and ds.test_labels.dtype == torch.int64
    assert int(ds.train_labels.min()) >= 0 and int(ds.train_labels.max()) <= 99
    assert torch.equal(ds.train_images[17], torch.from_numpy(raw["x_train"][17].transpose(2, 0, 1).copy()))
    assert ds.train_labels.tolist() == raw["y_train"].tolist()
    assert ds.class_names == [str(n) for n in raw["class_names"]] and ds.class_names[0] == "apple"
    assert ds.mean == (0.5071, 0.4867, 0.4408) and ds.std == (0.2675, 0.2565, 0.2761)
    assert ds.crop_padding == 4 and ds.hflip is True and ds.info["format"] == "npz"


@needs_tiny
def test_cifar10_npz_and_directory_holding_it(tmp_path: Path) -> None:
    ds = cifar10(str(TINY10))
    assert ds.train_images.shape == (500, 3, 32, 32) and ds.num_classes == 10
    assert ds.mean == (0.4914, 0.4822, 0.4465) and ds.std == (0.2470, 0.2435, 0.2616)
    shutil.copy(TINY10, tmp_path / "cifar10.npz")
    again = cifar10(str(tmp_path))
    assert torch.equal(again.train_images, ds.train_images) and again.info["source"] == str(
        tmp_path / "cifar10.npz"
    )


@needs_tiny
def test_wrong_dataset_for_the_file_is_refused() -> None:
    with pytest.raises(UsageError, match="cifar100 expects 100 classes but the data names 10"):
        cifar100(str(TINY10))


def _torchvision_reads(cls, root: Path, monkeypatch: pytest.MonkeyPatch, train: bool) -> object:
    """torchvision's own reader as the oracle (its md5 checks are for the real files, so skip them)."""
    monkeypatch.setattr(cls, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    return cls(str(root), train=train, download=False)


def test_torchvision_layout_cifar100_matches_torchvision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    truth = write_cifar100(tmp_path)
    ds = cifar100(str(tmp_path))
    assert ds.train_images.shape == (6, 3, 32, 32) and ds.test_images.shape == (4, 3, 32, 32)
    # the format by hand: row = 1024 red, then 1024 green, then 1024 blue values, each 32x32 row-major
    assert int(ds.train_images[3, 1, 5, 7]) == int(truth["train"][3, 1024 + 5 * 32 + 7])
    assert ds.train_labels.tolist() == truth["y_train"] and ds.test_labels.tolist() == truth["y_test"]
    assert ds.class_names == truth["names"] and ds.info["format"] == "folder"
    for train, images in ((True, ds.train_images), (False, ds.test_images)):
        ref = _torchvision_reads(torchvision.datasets.CIFAR100, tmp_path, monkeypatch, train)
        assert torch.equal(images, torch.from_numpy(ref.data).permute(0, 3, 1, 2))  # ref is NHWC
    assert ref.classes == ds.class_names
    # the extracted folder itself works as a root too
    assert torch.equal(cifar100(str(tmp_path / "cifar-100-python")).test_images, ds.test_images)


def test_torchvision_layout_cifar10_bytes_keys(tmp_path: Path) -> None:
    truth = write_cifar10(tmp_path)
    ds = cifar10(str(tmp_path))
    assert ds.train_images.shape == (10, 3, 32, 32)
    assert torch.equal(ds.train_images.reshape(10, -1), torch.from_numpy(truth["train"]))
    assert torch.equal(ds.test_images.reshape(3, -1), torch.from_numpy(truth["test"]))
    assert ds.train_labels.tolist() == truth["y_train"] and ds.class_names == truth["names"]


def test_incomplete_folder_names_the_missing_files(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(UsageError, match="lacks data_batch_3"):
        cifar10(str(tmp_path))


def test_missing_root_names_paths_and_next_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError) as err:
        cifar100(str(tmp_path))
    message = err.value.message
    assert str(tmp_path / "cifar100.npz") in message and str(tmp_path / "cifar-100-python") in message
    assert "--data-root path/to/cifar100.npz" in message and "--download" in message
    monkeypatch.chdir(tmp_path)  # root None means ./data
    with pytest.raises(UsageError, match=str(tmp_path / "data" / "cifar-100-python")):
        cifar100()
    with pytest.raises(UsageError, match="nope.npz does not exist"):
        cifar100(str(tmp_path / "nope.npz"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match="is a file but not an .npz"):
        cifar100(str(tmp_path / "notes.txt"))


def test_download_uses_torchvision_then_reads_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    class FakeCIFAR10:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, download))
            write_cifar10(Path(root))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    ds = cifar10(str(tmp_path / "fresh"), download=True)
    assert calls == [(str(tmp_path / "fresh"), True)] and ds.train_images.shape == (10, 3, 32, 32)


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(UsageError, match="refusing to load"):
        read_cifar_pickle(bad)
    assert not marker.exists()


def test_unknown_option_lists_accepted_ones() -> None:
    with pytest.raises(
        UsageError,
        match="dataset 'cifar100' has no option 'imbalance_factor'; valid options are root, download",
    ):
        cifar100(None, imbalance_factor=0.1)

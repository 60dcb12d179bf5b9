"""CIFAR-100 and CIFAR-10 from an ``.npz`` file or torchvision's ``cifar-*-python`` layout.

The official archives hold Python pickles; they are read with a restricted unpickler
that only rebuilds numpy arrays, lists and strings (no arbitrary code).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ekdcli.sdk.contracts import InMemoryDataset
from ekdcli.sdk.data import from_arrays, read_npz
from ekdcli.sdk.errors import JobError, UsageError
from ekdcli.sdk.options import as_bool, check_names, owner


@dataclass(frozen=True)
class CifarSpec:
    name: str
    title: str
    num_classes: int
    npz_name: str
    folder: str  # torchvision's extracted folder
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    torchvision_class: str


SPECS: dict[str, CifarSpec] = {
    "cifar100": CifarSpec(
        name="cifar100",
        title="CIFAR-100",
        num_classes=100,
        npz_name="cifar100.npz",
        folder="cifar-100-python",
        train_files=("train",),
        test_file="test",
        meta_file="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
        mean=(0.5071, 0.4867, 0.4408),
        std=(0.2675, 0.2565, 0.2761),
        torchvision_class="CIFAR100",
    ),
    "cifar10": CifarSpec(
        name="cifar10",
        title="CIFAR-10",
        num_classes=10,
        npz_name="cifar10.npz",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_file="test_batch",
        meta_file="batches.meta",
        label_key="labels",
        names_key="label_names",
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        torchvision_class="CIFAR10",
    ),
}

DEFAULT_ROOT = "./data"


# ----------------------------------------------------------------- safe unpickle
def _allowed_globals() -> dict[tuple[str, str], Any]:
    import codecs

    try:  # numpy >= 2
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer  # type: ignore[attr-defined]
    return allowed


class _SafeUnpickler(pickle.Unpickler):
    """Rebuilds only numpy arrays and plain containers: CIFAR batches need nothing else."""

    allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def _text(value: Any) -> Any:
    return value.decode("latin1") if isinstance(value, bytes) else value


def read_cifar_pickle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """One CIFAR batch/meta pickle as a dict with ``str`` keys (Python 2 and 3 pickles alike)."""
    try:
        with open(path, "rb") as handle:
            raw = _SafeUnpickler(handle, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as exc:
        raise UsageError(
            f"cannot read the CIFAR file {path} ({exc}); re-extract the official archive or use --download."
        ) from exc
    if not isinstance(raw, dict):
        raise UsageError(
            f"the CIFAR file {path} holds a {type(raw).__name__}, not a dict; re-extract the archive."
        )
    return {_text(k): v for k, v in raw.items()}


def _batch(spec: CifarSpec, path: Path) -> tuple[np.ndarray, np.ndarray]:
    entry = read_cifar_pickle(path)
    if "data" not in entry or spec.label_key not in entry:
        raise UsageError(
            f"the CIFAR file {path} lacks 'data' or '{spec.label_key}'; is it a {spec.title} file? "
            "Re-extract the official archive."
        )
    data = np.asarray(entry["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UsageError(f"the CIFAR file {path} has data of shape {data.shape}, expected [N, 3072].")
    # rows are the R plane, then G, then B, each 32x32 row-major: exactly NCHW
    return data.reshape(-1, 3, 32, 32), np.asarray(entry[spec.label_key], dtype=np.int64)


def read_torchvision_folder(spec: CifarSpec, folder: Path) -> dict[str, Any]:
    """Arrays of an extracted ``cifar-100-python`` / ``cifar-10-batches-py`` folder (images NCHW)."""
    missing = [f for f in (*spec.train_files, spec.test_file, spec.meta_file) if not (folder / f).is_file()]
    if missing:
        raise UsageError(
            f"{folder} lacks {', '.join(missing)}; "
            f"re-extract the official {spec.title} archive or use --download."
        )
    parts = [_batch(spec, folder / f) for f in spec.train_files]
    x_test, y_test = _batch(spec, folder / spec.test_file)
    meta = read_cifar_pickle(folder / spec.meta_file)
    names = [_text(n) for n in meta.get(spec.names_key, [])] or None
    return {
        "x_train": np.concatenate([p[0] for p in parts]),
        "y_train": np.concatenate([p[1] for p in parts]),
        "x_test": x_test,
        "y_test": y_test,
        "class_names": names,
    }


# -------------------------------------------------------------------- resolution
def _is_folder(spec: CifarSpec, path: Path) -> bool:
    return (path / spec.meta_file).is_file() and (path / spec.test_file).is_file()


def _download(spec: CifarSpec, directory: Path) -> None:
    import torchvision

    cls = getattr(torchvision.datasets, spec.torchvision_class)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        cls(root=str(directory), train=True, download=True)
    except Exception as exc:  # network errors come in many types
        raise JobError(
            f"downloading {spec.title} into {directory} failed ({exc}); download the official archive by "
            f"hand, extract it there, or pass --data-root path/to/{spec.npz_name}."
        ) from exc


def locate(spec: CifarSpec, root: str | os.PathLike[str] | None, download: bool) -> tuple[str, Path]:
    """Find ``spec``'s data under ``root``: ``("npz" | "folder", path)``; UsageError naming the paths."""
    base = Path(root if root is not None else DEFAULT_ROOT).expanduser().absolute()
    if base.is_file():
        if base.suffix.lower() != ".npz":
            raise UsageError(
                f"--data-root {base} is a file but not an .npz; give an .npz file or a directory holding "
                f"{spec.folder}/."
            )
        return "npz", base
    if base.suffix.lower() == ".npz":
        raise UsageError(
            f"{base} does not exist; pass --data-root path/to/{spec.npz_name} or a directory holding "
            f"{spec.folder}/."
        )
    looked = [base / spec.npz_name, base / spec.folder, base]
    if base.is_dir():
        if looked[0].is_file():
            return "npz", looked[0]
        if _is_folder(spec, looked[1]):
            return "folder", looked[1]
        if _is_folder(spec, base):
            return "folder", base
    if download:
        _download(spec, base)
        if _is_folder(spec, base / spec.folder):
            return "folder", base / spec.folder
    shown = ", ".join(str(p) for p in looked[: 2 if not base.is_dir() else 3])
    hint = "" if download else ", or add --download to fetch the official archive"
    raise UsageError(
        f"no {spec.title} data found (looked at {shown}); pass --data-root path/to/{spec.npz_name} "
        f"or a directory holding {spec.folder}/{hint}."
    )


def load_cifar(
    spec_name: str, root: str | os.PathLike[str] | None = None, download: bool = False
) -> InMemoryDataset:
    """Load CIFAR-100/10 as uint8 NCHW tensors with int64 labels and the standard normalization."""
    spec = SPECS[spec_name]
    kind, path = locate(spec, root, download)
    if kind == "npz":
        arrays: dict[str, Any] = dict(read_npz(path))
        layout = "auto"
    else:
        arrays = read_torchvision_folder(spec, path)
        layout = "NCHW"
    names = arrays.get("class_names")
    return from_arrays(
        spec.name,
        arrays["x_train"],
        arrays["y_train"],
        arrays["x_test"],
        arrays["y_test"],
        class_names=None if names is None else [str(n) for n in names],
        mean=spec.mean,
        std=spec.std,
        num_classes=spec.num_classes,
        crop_padding=4,
        hflip=True,
        layout=layout,
        info={"source": str(path), "format": kind},
    )


def cifar100(root: str | None = None, download: bool = False, **options: Any) -> InMemoryDataset:
    """CIFAR-100 (100 classes, 32x32 RGB)."""
    who = owner("dataset", "cifar100")
    check_names(who, options, ("root", "download"))
    return load_cifar("cifar100", root, as_bool(who, "download", download))


def cifar10(root: str | None = None, download: bool = False, **options: Any) -> InMemoryDataset:
    """CIFAR-10 (10 classes, 32x32 RGB)."""
    who = owner("dataset", "cifar10")
    check_names(who, options, ("root", "download"))
    return load_cifar("cifar10", root, as_bool(who, "download", download))

"""Helpers for dataset plugins: arrays -> InMemoryDataset, npz reading, class-count text.

Imports torch; plugin ``__init__`` modules never import this (their factories do).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ekdcli.sdk.contracts import InMemoryDataset
from ekdcli.util.errors import UsageError

NPZ_REQUIRED = ("x_train", "y_train", "x_test", "y_test")
NPZ_OPTIONAL = ("class_names",)


# ---------------------------------------------------------------------- building
def to_nchw(x: np.ndarray | torch.Tensor, layout: str = "auto") -> torch.Tensor:
    """uint8 images as a contiguous ``[N, C, H, W]`` tensor.

    ``layout`` is ``"NHWC"``, ``"NCHW"`` or ``"auto"`` (channels = the axis of size 1 or 3;
    ``[N, H, W]`` is read as one channel).
    """
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if t.dtype != torch.uint8:
        raise UsageError(
            f"images must be uint8 (0..255), got {t.dtype}; convert them, e.g. "
            "(x * 255).round().astype('uint8') for floats in [0, 1]."
        )
    if t.ndim == 3:
        return t.unsqueeze(1).contiguous()
    if t.ndim != 4:
        raise UsageError(f"images must have shape [N, H, W, C] or [N, C, H, W], got {tuple(t.shape)}.")
    layout = layout.upper()
    if layout == "AUTO":
        first, last = t.shape[1] in (1, 3), t.shape[3] in (1, 3)
        if first == last:
            what = "two axes could be" if first else "no axis has size 1 or 3, so none is"
            raise UsageError(
                f"cannot tell the channel axis of images of shape {tuple(t.shape)} ({what} the channels); "
                "store them as [N, H, W, C] or [N, C, H, W] with 1 (gray) or 3 (RGB) channels."
            )
        layout = "NCHW" if first else "NHWC"
    if layout == "NHWC":
        return t.permute(0, 3, 1, 2).contiguous()
    if layout == "NCHW":
        return t.contiguous()
    raise UsageError(f"unknown image layout {layout!r}; use 'auto', 'NHWC' or 'NCHW'.")


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 ``[N, C, H, W]`` images, in [0, 1] units.

    Exact and memory-light: a 256-bin histogram per channel instead of a float copy.
    """
    means, stds = [], []
    values = np.arange(256, dtype=np.float64) / 255.0
    for c in range(images.shape[1]):
        hist = torch.bincount(images[:, c].reshape(-1).to(torch.int64), minlength=256).double().cpu().numpy()
        total = hist.sum()
        if total == 0:
            raise UsageError("cannot compute normalization statistics from an empty training set.")
        mean = float((hist * values).sum() / total)
        var = float((hist * (values - mean) ** 2).sum() / total)
        means.append(mean)
        stds.append(max(var, 1e-12) ** 0.5)
    return tuple(means), tuple(stds)


def _labels(y: np.ndarray | torch.Tensor, count: int, split: str) -> torch.Tensor:
    arr = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
    if arr.ndim != 1 or arr.shape[0] != count:
        raise UsageError(
            f"y_{split} has shape {arr.shape} but x_{split} holds {count} images; give one label per image."
        )
    fractional = arr.size and not np.issubdtype(arr.dtype, np.integer) and not np.all(np.mod(arr, 1) == 0)
    if fractional:
        raise UsageError(f"y_{split} must hold integer class labels, got {arr.dtype} values.")
    return torch.as_tensor(arr.astype(np.int64, copy=False))


def _class_names(
    name: str,
    class_names: Sequence[str] | None,
    num_classes: int | None,
    ytr: torch.Tensor,
    yte: torch.Tensor,
) -> list[str]:
    """The class names given (checked against ``num_classes``), else ``"0"``..``"K-1"``; labels must fit."""
    if class_names is not None:
        names = [str(n) for n in class_names]
        if num_classes is not None and len(names) != num_classes:
            raise UsageError(
                f"{name} expects {num_classes} classes but the data names {len(names)}; "
                "check that --data matches the file given with --data-root."
            )
    else:
        found = int(max(ytr.max().item() if ytr.numel() else -1, yte.max().item() if yte.numel() else -1))
        names = [str(i) for i in range(num_classes if num_classes is not None else found + 1)]
    k = len(names)
    for split, y in (("train", ytr), ("test", yte)):
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= k):
            raise UsageError(
                f"y_{split} holds labels {int(y.min())}..{int(y.max())} but {name} has {k} classes "
                f"(0..{k - 1}); check that --data matches the file given with --data-root."
            )
    return names


def _normalization(
    name: str, train: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std: as given (checked), or measured on the training images."""
    if (mean is None) != (std is None):
        raise UsageError("give both mean and std, or neither (then both come from the training images).")
    if mean is None or std is None:
        mean, std = channel_stats(train)
    mean_t = tuple(float(v) for v in mean)
    std_t = tuple(float(v) for v in std)
    if len(mean_t) != train.shape[1] or len(std_t) != train.shape[1]:
        raise UsageError(
            f"{name} images have {train.shape[1]} channels but {len(mean_t)} mean / {len(std_t)} std "
            "values were given; give one per channel."
        )
    if any(s <= 0 for s in std_t):
        raise UsageError(f"the normalization std must be positive, got {std_t}.")
    return mean_t, std_t


def from_arrays(
    name: str,
    x_train: np.ndarray | torch.Tensor,
    y_train: np.ndarray | torch.Tensor,
    x_test: np.ndarray | torch.Tensor,
    y_test: np.ndarray | torch.Tensor,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    *,
    num_classes: int | None = None,
    crop_padding: int = 4,
    hflip: bool = True,
    layout: str = "auto",
    info: dict[str, Any] | None = None,
) -> InMemoryDataset:
    """Build an :class:`InMemoryDataset` from uint8 image arrays (NHWC or NCHW) and integer labels.

    ``mean``/``std`` default to the training images' per-channel statistics (in [0, 1] units).
    Without ``class_names`` the classes are named ``"0"``..``"K-1"``, with ``K = num_classes``
    or one more than the largest label.
    """
    train = to_nchw(x_train, layout)
    test = to_nchw(x_test, layout)
    if train.shape[1:] != test.shape[1:]:
        raise UsageError(
            f"train images {tuple(train.shape[1:])} and test images {tuple(test.shape[1:])} differ in "
            "shape; give both splits the same channels and size."
        )
    ytr = _labels(y_train, train.shape[0], "train")
    yte = _labels(y_test, test.shape[0], "test")
    names = _class_names(name, class_names, num_classes, ytr, yte)
    mean_t, std_t = _normalization(name, train, mean, std)
    return InMemoryDataset(
        name=name,
        train_images=train,
        train_labels=ytr,
        test_images=test,
        test_labels=yte,
        class_names=names,
        mean=mean_t,
        std=std_t,
        crop_padding=int(crop_padding),
        hflip=bool(hflip),
        info=dict(info or {}),
    )


def describe_class_counts(name: str, info: Mapping[str, Any]) -> str | None:
    """The training class counts of a long-tailed dataset (``info["class_counts"]``) as text, else None.

    One summary line (total, head and tail size, how the subset was made), then every count in class order.
    """
    counts = [int(c) for c in info.get("class_counts") or ()]
    if not counts:
        return None
    made = ", ".join(
        f"{label} {info[key]}"
        for key, label in (("profile", "profile"), ("imbalance_factor", "imbalance factor"), ("seed", "seed"))
        if key in info
    )
    return (
        f"{name}: {sum(counts):,} training images in {len(counts)} classes, {max(counts)} down to "
        f"{min(counts)} per class" + (f" ({made})" if made else "") + "\n"
        f"  class counts: {' '.join(map(str, counts))}"
    )


# --------------------------------------------------------------------------- npz
def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a dataset ``.npz`` (x_train, y_train, x_test, y_test, optional class_names) without pickle."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UsageError(f"the dataset file {path} does not exist; check --data-root.")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path} is not a readable .npz file (not a zip archive); check --data-root.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            missing = [k for k in NPZ_REQUIRED if k not in keys]
            if missing:
                raise UsageError(
                    f"{path} lacks the arrays {', '.join(missing)} "
                    f"(it has {', '.join(sorted(keys)) or 'none'}); "
                    f"a dataset .npz needs {', '.join(NPZ_REQUIRED)} and optionally class_names."
                )
            arrays = {k: archive[k] for k in (*NPZ_REQUIRED, *NPZ_OPTIONAL) if k in keys}
    except UsageError:
        raise
    except ValueError as exc:  # object arrays need pickle, which we refuse
        raise UsageError(
            f"{path} stores an array that needs pickle ({exc}); save class_names as a string array "
            "(np.array(names, dtype=str))."
        ) from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise UsageError(f"{path} is not a readable .npz file ({exc}); check --data-root.") from exc
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8:
            raise UsageError(f"x_{split} in {path} is {x.dtype}; images must be uint8 (0..255).")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise UsageError(
                f"{path}: y_{split} has shape {y.shape} for {x.shape[0]} images in x_{split}; "
                "give one label per image."
            )
    return arrays

"""``listfile-lt``: an ImageNet-LT style dataset read from list files into memory.

``--data-root`` is a folder holding ``train.txt`` and ``test.txt`` (names configurable),
each line ``relative/path.jpg label`` (the format of ImageNet-LT's and Places-LT's
``*_train.txt`` / ``*_test.txt``; blank lines and ``#`` comments are skipped).  Every
image is decoded once, resized so its shorter side is ``image_size`` and centre-cropped
to ``image_size`` x ``image_size`` RGB, and the whole set becomes an
:class:`~ekdcli.sdk.contracts.InMemoryDataset`: the engine then augments on the device.  An
optional ``classes.txt`` (one name per line, line ``i`` naming label ``i``) names the
classes.  ``info["class_counts"]`` holds the training images per class.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ekdcli.sdk.contracts import InMemoryDataset
from ekdcli.sdk.data import from_arrays
from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.options import as_bool, as_int, check_names, owner

CLASSES_FILE = "classes.txt"


def read_list(path: Path) -> tuple[list[str], np.ndarray]:
    """``(relative paths, int64 labels)`` of a list file; a malformed line is named with its number."""
    if not path.is_file():
        raise UsageError(
            f"list file {path} does not exist; put train/test list files of 'relative/path.jpg label' "
            "lines in --data-root (or name them with the train_list/test_list options)."
        )
    paths: list[str] = []
    labels: list[int] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)  # the path may contain spaces, the label is the last field
        if len(parts) != 2 or not parts[1].isdigit():
            raise UsageError(
                f"{path}:{number}: expected 'relative/path.jpg label' with a label >= 0, got {line!r}."
            )
        paths.append(parts[0])
        labels.append(int(parts[1]))
    if not paths:
        raise UsageError(f"list file {path} names no images; add 'relative/path.jpg label' lines.")
    return paths, np.asarray(labels, dtype=np.int64)


def load_image(path: Path, size: int) -> np.ndarray:
    """One image as uint8 ``[size, size, 3]``: shorter side resized to ``size``, centre crop."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except FileNotFoundError:
        raise UsageError(
            f"image {path} named in the list file does not exist; fix the list or the root."
        ) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise UsageError(f"image {path} could not be read ({exc}); replace it or drop its line.") from None
    width, height = image.size
    scale = size / min(width, height)
    resized = (max(size, round(width * scale)), max(size, round(height * scale)))
    if resized != image.size:
        image = image.resize(resized, Image.Resampling.BILINEAR)
    left, top = (resized[0] - size) // 2, (resized[1] - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def load_images(root: Path, paths: list[str], size: int, workers: int) -> np.ndarray:
    """All images as uint8 ``[N, size, size, 3]``, decoded by ``workers`` threads (PIL releases the GIL)."""
    files = [root / p for p in paths]
    if workers <= 1:
        decoded = [load_image(f, size) for f in files]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            decoded = list(pool.map(load_image, files, [size] * len(files)))
    return np.stack(decoded)


def class_names(root: Path, num_labels: int) -> list[str]:
    """Names from ``classes.txt`` when present, else ``"0"``..``"K-1"``."""
    names_file = root / CLASSES_FILE
    if not names_file.is_file():
        return [str(i) for i in range(num_labels)]
    names = [line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(names) < num_labels:
        raise UsageError(
            f"{names_file} names {len(names)} classes but the list files use labels up to {num_labels - 1}; "
            "give one name per label."
        )
    return names


def listfile_lt(
    root: str | None = None,
    download: bool = False,
    image_size: int = 32,
    train_list: str = "train.txt",
    test_list: str = "test.txt",
    workers: int = 0,
    **options: Any,
) -> InMemoryDataset:
    """The registered factory. ``workers=0`` picks ``min(8, CPU count)`` decoding threads."""
    who = owner("dataset", "listfile-lt")
    check_names(who, options, ("image_size", "train_list", "test_list", "workers"))
    if as_bool(who, "download", download):
        raise UsageError(
            "listfile-lt cannot download anything; point --data-root at a folder with list files."
        )
    if root is None:
        raise UsageError(
            "listfile-lt needs --data-root: a folder with train.txt and test.txt "
            "of 'relative/path.jpg label' lines."
        )
    folder = Path(root)
    if not folder.is_dir():
        raise UsageError(f"--data-root {folder} is not a folder; give the folder holding the list files.")
    size = as_int(who, "image_size", image_size, minimum=4)
    threads = as_int(who, "workers", workers, minimum=0) or min(8, os.cpu_count() or 1)
    train_paths, train_labels = read_list(folder / train_list)
    test_paths, test_labels = read_list(folder / test_list)
    num_labels = int(max(train_labels.max(), test_labels.max())) + 1
    names = class_names(folder, num_labels)
    counts = np.bincount(train_labels, minlength=len(names))
    present = counts[counts > 0]
    info = {
        "root": str(folder.resolve()),
        "train_list": train_list,
        "test_list": test_list,
        "image_size": size,
        "class_counts": [int(n) for n in counts],
        "imbalance_ratio": float(present.max() / present.min()),
        "empty_classes": int((counts == 0).sum()),
    }
    return from_arrays(
        "listfile-lt",
        load_images(folder, train_paths, size, threads),
        train_labels,
        load_images(folder, test_paths, size, threads),
        test_labels,
        class_names=names,
        crop_padding=max(1, size // 8),
        hflip=True,
        layout="NHWC",
        info=info,
    )

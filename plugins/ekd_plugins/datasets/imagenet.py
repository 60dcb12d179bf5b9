"""ImageNet (or any ImageFolder tree): ``root/train/<class>/*`` and ``root/val/<class>/*``.

Read from disk by DataLoader workers. Training transform: RandomResizedCrop + horizontal
flip; evaluation: resize to ``image_size * 256 / 224`` then centre crop. The training folder
is scanned once and shared by the augmented and the evaluation (scoring) views.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset as TorchDataset

from ekdcli.sdk.contracts import FolderDataset
from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.options import as_int, check_names, owner

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class IndexedDataset(TorchDataset):
    """Wraps a dataset of ``(image, label)`` to yield ``(image, label, index)`` (index keys energy scores)."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        image, label = self.base[index]
        return image, int(label), int(index)


def imagenet_transforms(image_size: int = 224) -> tuple[Any, Any]:
    """The standard (train, eval) torchvision transforms with ImageNet normalization."""
    from torchvision import transforms as T

    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    resize = int(round(image_size * 256 / 224))
    evaluate = T.Compose([T.Resize(resize), T.CenterCrop(image_size), T.ToTensor(), normalize])
    return train, evaluate


def _folder(path: Path, transform: Any) -> Any:
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(path), transform=transform)
    except (FileNotFoundError, OSError) as exc:
        raise UsageError(
            f"{path} holds no images in class folders ({exc}); lay it out as {path}/<class>/<image>.JPEG "
            "(the raw ImageNet val set must first be sorted into class folders)."
        ) from exc


def imagenet(
    root: str | None = None, download: bool = False, image_size: int = 224, **options: Any
) -> FolderDataset:
    """ImageNet-style folders under ``root`` (``train/`` and ``val/``); nothing is downloaded."""
    who = owner("dataset", "imagenet")
    check_names(who, options, ("root", "image_size"))
    image_size = as_int(who, "image_size", image_size, minimum=8)
    hint = "pass --data-root DIR where DIR holds train/ and val/ ImageFolder trees"
    if download:
        hint += " (ImageNet cannot be downloaded automatically; get it from image-net.org)"
    if root is None:
        raise UsageError(f"the imagenet dataset needs its folder; {hint}.")
    base = Path(os.fspath(root)).expanduser()
    if not base.is_dir():
        raise UsageError(f"the ImageNet root {base} is not a directory; {hint}.")
    missing = [str(base / s) for s in ("train", "val") if not (base / s).is_dir()]
    if missing:
        raise UsageError(f"the ImageNet root {base} lacks {' and '.join(missing)}; {hint}.")
    train_tf, eval_tf = imagenet_transforms(image_size)
    train = _folder(base / "train", train_tf)
    val = _folder(base / "val", eval_tf)
    if val.classes != train.classes:
        extra = sorted(set(val.classes) ^ set(train.classes))[:5]
        raise UsageError(
            f"{base}/train and {base}/val have different class folders (e.g. {', '.join(extra)}); "
            "give both the same classes."
        )
    train_eval = copy.copy(train)  # same sample list, evaluation transform
    train_eval.transform = eval_tf
    return FolderDataset(
        name="imagenet",
        train=IndexedDataset(train),
        train_eval=IndexedDataset(train_eval),
        test=IndexedDataset(val),
        train_labels=[int(t) for t in train.targets],
        test_labels=[int(t) for t in val.targets],
        class_names=list(train.classes),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        in_channels=3,
        image_size=(image_size, image_size),
        info={"source": str(base), "format": "imagefolder"},
    )

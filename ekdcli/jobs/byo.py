"""Bring your own model and data from Python: ``ekd.distill(student=nn.Module, teacher=nn.Module,
train=Dataset)`` without writing a plugin.

The modules and the data become components of this process's registry (a model factory that hands
out a copy of the module, a dataset factory that returns the images as an ``InMemoryDataset``), and
the teacher's weights a file in the store, so the ordinary ``ekd distill`` job runs on them:
scoring, partitions, every method, checkpoints and run directories as for the built-in ones.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.jobs.build import weights_metadata
from ekdcli.sdk.contracts import InMemoryDataset
from ekdcli.sdk.plugins import registry
from ekdcli.sdk.registry import Component
from ekdcli.store.layout import Store
from ekdcli.store.weights import save_tensors
from ekdcli.util.errors import UsageError

if TYPE_CHECKING:
    import torch

PLUGIN = "python"  # the plugin name ``ekd list`` shows for these components
_counter = itertools.count(1)


def _images_and_labels(data: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``[N, C, H, W]`` images and int64 labels from a map-style dataset of ``(image, label)``
    (or a DataLoader over one); images are tensors or arrays, ``[C, H, W]`` or ``[H, W, C]``, uint8
    or floats in [0, 1] (torchvision's ``ToTensor``)."""
    import torch

    dataset = getattr(data, "dataset", data)  # a DataLoader: its dataset, unshuffled
    try:
        items = [dataset[i] for i in range(len(dataset))]
    except TypeError as exc:
        raise UsageError(
            f"{what} must be a map-style Dataset (len() and [i]) of (image, label) or a DataLoader over one."
        ) from exc
    if not items:
        raise UsageError(f"{what} holds no samples; pass a dataset with images.")
    images = torch.stack([_chw(torch.as_tensor(item[0])) for item in items])
    labels = torch.tensor([int(item[1]) for item in items], dtype=torch.int64)
    if images.is_floating_point():
        if float(images.min()) < 0 or float(images.max()) > 1:
            raise UsageError(
                f"{what}'s float images must be in [0, 1] (e.g. torchvision's ToTensor, before Normalize): "
                "ekd normalizes them itself."
            )
        images = (images * 255).round().to(torch.uint8)
    return images.to(torch.uint8).contiguous(), labels


def _chw(image: torch.Tensor) -> torch.Tensor:
    if image.dim() == 2:
        return image.unsqueeze(0)
    if image.dim() == 3 and image.shape[0] not in (1, 3) and image.shape[-1] in (1, 3):
        return image.permute(2, 0, 1)  # HWC (a numpy array or a PIL image) to CHW
    return image


def python_dataset(train: Any, test: Any | None, class_names: list[str] | None) -> InMemoryDataset:
    """The data as an ``InMemoryDataset`` named by its content (so scores of the same data are reused)."""
    x_train, y_train = _images_and_labels(train, "train")
    x_test, y_test = _images_and_labels(test, "test") if test is not None else (x_train, y_train)
    classes = int(max(int(y_train.max()), int(y_test.max())) + 1)
    names = list(class_names) if class_names is not None else [str(k) for k in range(classes)]
    if len(names) < classes:
        raise UsageError(f"class_names has {len(names)} names but the labels go up to {classes - 1}.")
    digest = hashlib.sha256(x_train.numpy().tobytes() + y_train.numpy().tobytes()).hexdigest()[:10]
    pixels = x_train.float().div(255).transpose(0, 1).reshape(x_train.shape[1], -1)
    return InMemoryDataset(
        name=f"python-{digest}",
        train_images=x_train,
        train_labels=y_train,
        test_images=x_test,
        test_labels=y_test,
        class_names=names,
        mean=tuple(float(m) for m in pixels.mean(1)),
        std=tuple(float(s) for s in pixels.std(1).clamp_min(1e-6)),
        info={"test_is_train": test is None},
    )


def register_dataset(dataset: InMemoryDataset) -> str:
    """Make ``dataset`` a dataset of this process's registry; returns its name."""
    if dataset.name not in registry("datasets"):
        registry("datasets").add(
            Component(
                "datasets", dataset.name, lambda root=None, **_: dataset, PLUGIN, description="from Python"
            )
        )
    return dataset.name


def register_module(module: torch.nn.Module, role: str, dataset: InMemoryDataset) -> str:
    """Make ``module`` a model of this process's registry (each build is a fresh copy of it, as
    given); refuses one whose logits do not fit the data."""
    import torch

    sample = dataset.train_images[:2].float().div(255)
    with torch.no_grad():
        try:
            logits = copy.deepcopy(module).eval()(sample)
        except Exception as exc:
            raise UsageError(
                f"the {role} module fails on a batch of the training images {tuple(sample.shape)} "
                f"({type(exc).__name__}: {exc}); it must take [N, C, H, W] float images."
            ) from exc
    logits = logits[0] if isinstance(logits, tuple) else logits
    if tuple(logits.shape) != (sample.shape[0], dataset.num_classes):
        raise UsageError(
            f"the {role} module gives logits of shape {tuple(logits.shape)} for {sample.shape[0]} images, "
            f"but the data have {dataset.num_classes} classes; give it {dataset.num_classes} outputs."
        )
    name = f"python-{role}-{type(module).__name__.lower()}-{next(_counter)}"
    registry("models").add(
        Component("models", name, lambda **_: copy.deepcopy(module), PLUGIN, description="from Python")
    )
    return name


def store_teacher(module: torch.nn.Module, arch: str, dataset: InMemoryDataset, store: Store) -> Path:
    """The teacher's weights as a store file (``<store>/python/<arch>.safetensors``) ekd can load."""
    path = store.root / "python" / f"{arch}.safetensors"
    state = {key: value.detach().cpu().contiguous() for key, value in module.state_dict().items()}
    save_tensors(path, state, weights_metadata(arch, dataset, dataset.name, "ekd.distill (a Python module)"))
    return path

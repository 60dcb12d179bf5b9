"""Turning names from the configuration into objects: datasets, models, trained weights.

Imports torch (through the plugins' factories); the CLI calls it inside commands only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli import __version__
from ekdcli.config import Config, foreign_note, naming_origin, split_foreign_options
from ekdcli.sdk.plugins import registry
from ekdcli.store.layout import Store
from ekdcli.store.weights import load_tensors, meta_value, non_finite
from ekdcli.util.errors import UsageError

if TYPE_CHECKING:
    import torch

    from ekdcli.sdk.contracts import Dataset


def data_options(config: Config) -> tuple[dict[str, Any], list[str]]:
    """The ``[data_options]`` the chosen dataset takes; keys a project file set for other datasets
    are left out (and returned, for a note)."""
    datasets = registry("datasets")
    chosen = datasets.get(config.data)
    declared = chosen.info.get("options")
    known = {key for c in datasets.list() if c is not chosen for key in (c.info.get("options") or {})}
    accepted = list(declared) if isinstance(declared, dict) else None
    return split_foreign_options(config, "data_options", config.data_options, accepted, known)


def load_dataset(config: Config) -> Dataset:
    from ekdcli.jobs.console import Console
    from ekdcli.sdk.data import describe_class_counts

    component = registry("datasets").get(config.data)
    options, dropped = data_options(config)
    say = Console(quiet=config.quiet, json_mode=config.json)
    if dropped:
        say.say(foreign_note(config, "data_options", dropped, f"dataset {component.name!r}"))
    if config.download:
        options["download"] = True
    with naming_origin(config, "data_options"):
        dataset = component.build(config.data_root, **options)
    counts = describe_class_counts(dataset.name, dataset.info)  # long-tailed data: say what was kept
    if counts:
        say.say(counts)
    return dataset


def dataset_key(config: Config) -> str:
    """The dataset's name in the store: its canonical name, plus options that change its content."""
    name = registry("datasets").get(config.data).name
    options, _ = data_options(config)
    if not options:
        return name
    suffix = "-".join(f"{k}{v}" for k, v in sorted(options.items()))
    return f"{name}-{suffix}"


def canonical_model(name: str) -> str:
    return registry("models").get(name).name


def build_model(name: str, num_classes: int, in_channels: int) -> torch.nn.Module:
    return registry("models").get(name).build(num_classes=num_classes, in_channels=in_channels)


def weights_metadata(
    arch: str, dataset: Dataset, dataset_key: str, made_by: str, **extra: Any
) -> dict[str, Any]:
    """Metadata stored with every weights file (what is needed to rebuild and check it)."""
    return {
        "format": "ekd-weights",
        "arch": arch,
        "dataset": dataset_key,
        "num_classes": dataset.num_classes,
        "in_channels": dataset.in_channels,
        "made_by": made_by,
        "ekd_version": __version__,
        **extra,
    }


@dataclass
class TrainedModel:
    model: torch.nn.Module
    arch: str
    path: Path
    metadata: dict[str, str]


def is_registered_model(ref: str) -> bool:
    return ref in registry("models")


def stored_weights_path(ref: str, dataset_key: str, store: Store, role: str) -> Path:
    """The weights file of a trained model (by name in the store, or a path); no torch needed."""
    canonical = canonical_model(ref) if is_registered_model(ref) else None
    return store.require_weights(ref, dataset_key, canonical, role)


def load_trained(ref: str, dataset: Dataset, dataset_key: str, store: Store, role: str) -> TrainedModel:
    """A model with trained weights from the store (by name) or a ``.safetensors`` path.

    Everything that can be wrong with the file is said naming it: unknown architecture, bad
    metadata, another dataset's shape, missing or mis-shaped keys, NaN or infinite weights.
    """
    path = stored_weights_path(ref, dataset_key, store, role)
    tensors, metadata = load_tensors(path)
    canonical = canonical_model(ref) if is_registered_model(ref) else None
    arch = _recorded_arch(path, metadata, canonical, role)
    num_classes = _meta_int(metadata, "num_classes", dataset.num_classes, path, role)
    in_channels = _meta_int(metadata, "in_channels", dataset.in_channels, path, role)
    if num_classes != dataset.num_classes:
        raise UsageError(
            f"the {role} {ref!r} ({path}) predicts {num_classes} classes but data {dataset_key!r} has "
            f"{dataset.num_classes}; use a {role} trained on this data."
        )
    if in_channels != dataset.in_channels:
        raise UsageError(
            f"the {role} {ref!r} ({path}) takes {in_channels}-channel images but data {dataset_key!r} has "
            f"{dataset.in_channels} channels; use a {role} trained on this data."
        )
    return _restored(arch, num_classes, in_channels, tensors, path, metadata, role)


def open_trained(path: Path, canonical: str | None = None, role: str = "model") -> TrainedModel:
    """A model from a weights file alone (its metadata says what to build), without loading data."""
    tensors, metadata = load_tensors(path)
    arch = _recorded_arch(path, metadata, canonical, role)
    num_classes = _meta_int(metadata, "num_classes", None, path, role)
    in_channels = _meta_int(metadata, "in_channels", None, path, role)
    return _restored(arch, num_classes, in_channels, tensors, path, metadata, role)


def _recorded_arch(path: Path, metadata: dict[str, str], canonical: str | None, role: str) -> str:
    arch = meta_value(metadata, "arch") or canonical
    if not arch:
        raise UsageError(
            f"{path} records no architecture; re-create it with 'ekd import' or 'ekd train' so ekd knows what to build."
        )
    if not isinstance(arch, str) or arch not in registry("models"):
        raise UsageError(
            f"the {role} file {path} records the architecture {arch!r}, which no installed plugin provides; "
            "check 'ekd list models' and 'ekd plugins', or re-create the file."
        )
    return arch


def _restored(
    arch: str,
    num_classes: int,
    in_channels: int,
    tensors: dict[str, torch.Tensor],
    path: Path,
    metadata: dict[str, str],
    role: str,
) -> TrainedModel:
    """The architecture built and its checked, finite weights loaded."""
    bad = non_finite(tensors)
    if bad:
        raise UsageError(
            f"the {role} file {path} holds NaN or infinite weights ({', '.join(bad[:3])}"
            f"{', ...' if len(bad) > 3 else ''}); retrain or re-import it."
        )
    model = build_model(arch, num_classes, in_channels)
    from ekdcli.store.importer import check_state_dict

    check_state_dict(model, tensors, f"{arch} (the {role} file {path})")
    model.load_state_dict(tensors, strict=True)
    return TrainedModel(model=model, arch=registry("models").get(arch).name, path=path, metadata=metadata)


def _meta_int(metadata: dict[str, str], key: str, default: int | None, path: Path, role: str) -> int:
    """A whole number from a weights file's metadata; anything else names the file and the key."""
    value = meta_value(metadata, key, default)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise UsageError(
        f"the {role} file {path} records {key} = {value!r}, not a positive whole number; re-create it "
        "with 'ekd train' or 'ekd import'."
    )

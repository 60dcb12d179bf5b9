"""``ekd import``: a published checkpoint (.pth) becomes a checked safetensors file in the store."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ekdcli import __version__
from ekdcli.config import Config
from ekdcli.jobs.build import build_model, canonical_model, dataset_key
from ekdcli.jobs.common import console, open_store, replacing_note, store_file_lock
from ekdcli.sdk.plugins import registry
from ekdcli.store.layout import safe_name
from ekdcli.store.weights import non_finite, save_tensors
from ekdcli.util.errors import UsageError


def _file_sha256(path: Path, quiet: bool) -> str:
    """sha256 of the checkpoint's bytes, with progress (a large ImageNet checkpoint takes seconds)."""
    from ekdcli.engine.progress import PassProgress, resolve_mode

    digest = hashlib.sha256()
    mode = resolve_mode("auto", quiet, is_main=True)
    with (
        path.open("rb") as handle,
        PassProgress(f"hashing {path.name}", path.stat().st_size, mode, "B") as bar,
    ):
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _shape_of_data(config: Config, num_classes: int | None, in_channels: int | None) -> tuple[int, int]:
    """Classes and channels: from the flags, else the dataset's registration, else the loaded data."""
    info = registry("datasets").get(config.data).info
    if num_classes is None and not config.data_options and "classes" in info:
        num_classes = int(info["classes"])
    if in_channels is None and not config.data_options and "channels" in info:
        in_channels = int(info["channels"])
    if num_classes is None or in_channels is None:
        from ekdcli.jobs.build import load_dataset

        dataset = load_dataset(config)
        num_classes = num_classes or dataset.num_classes
        in_channels = in_channels or dataset.in_channels
    return num_classes, in_channels


@dataclass
class ImportResult:
    """What ``ekd import`` stored: the ``weights`` file, the model's ``arch``, the data key it was
    stored under (``data``) and the number of ``tensors`` it holds."""

    weights: Path
    arch: str
    data: str
    tensors: int

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` result (``weights`` as text)."""
        return {**dataclasses.asdict(self), "weights": str(self.weights)}


def run_import(
    config: Config,
    source: Path,
    name: str | None,
    num_classes: int | None,
    in_channels: int | None,
    prefix: str | None = None,
) -> ImportResult:
    from ekdcli.store.importer import check_state_dict, convert, read_state_dict

    if not config.model:
        raise UsageError("say which architecture the checkpoint is with --model (see 'ekd list models').")
    arch = canonical_model(config.model)
    data_key = dataset_key(config)
    target = open_store(config).model_path(data_key, safe_name(name, "--name") if name else arch)
    lock = store_file_lock(target, "wait for it to finish, or import with --name NAME")
    lock.ensure_free()
    classes, channels = _shape_of_data(config, num_classes, in_channels)
    state = read_state_dict(source, prefix)
    model = build_model(arch, classes, channels)
    # Name what the model was built for: a wrong --data (classes, channels) shows up as mis-shaped keys.
    built_for = f"{classes} classes and {channels} input channel(s), as for --data {config.data}"
    check_state_dict(model, state, f"{arch} ({built_for}; --num-classes and --in-channels override)")
    tensors = convert(model, state)
    bad = non_finite(tensors)
    if bad:
        raise UsageError(
            f"{source} holds NaN or infinite weights ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); "
            "ekd stores finite weights only, so import a checkpoint from before the training diverged."
        )
    metadata = {
        "format": "ekd-weights",
        "arch": arch,
        "dataset": data_key,
        "num_classes": classes,
        "in_channels": channels,
        "made_by": "ekd import",
        "source": str(source.resolve()),
        "source_sha256": _file_sha256(source, config.quiet or config.json),
        "ekd_version": __version__,
    }
    say = console(config)
    with lock:
        if target.is_file():
            say.say(f"{replacing_note(target)}; import with --name NAME to keep both")
        save_tensors(target, tensors, metadata)
    say.say(f"imported {source} as {arch} ({classes} classes, {len(tensors)} tensors) -> {target}")
    return ImportResult(weights=Path(target), arch=arch, data=data_key, tensors=len(tensors))

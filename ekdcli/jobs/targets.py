"""What a reference names: the one resolver behind evaluate, export, curves and the Python API.

A reference is, in this order: a run directory (or one of its files, e.g. ``runs/x/summary.json``),
a run name under ``<store>/runs/``, a ``.safetensors`` weights file, or a model name in the store
(``<store>/models/<data>/<name>.safetensors``).  A directory holding run directories (e.g.
``<store>/runs``) and a pattern the shell left as it was stand for each run they hold
(:func:`expand_targets`).  Torch-free.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ekdcli.config import Config
from ekdcli.jobs.build import canonical_model, dataset_key, is_registered_model
from ekdcli.store import rundir
from ekdcli.store.layout import Store
from ekdcli.util.errors import UsageError

# Settings a run's config.toml decides for what is done with its weights, unless given as flags now.
RUN_DATA_KEYS = ("data", "data_root", "data_options", "download")


@dataclass
class Target:
    """What a reference names: a weights file, and the run it belongs to (if any)."""

    ref: str
    kind: str  # "run", "store" or "weights"
    weights: Path
    run_dir: Path | None = None
    run_values: dict[str, Any] = field(default_factory=dict)  # the run's config.toml


def expand_targets(refs: list[str], store: Store | None = None) -> list[str]:
    """A directory holding run directories (e.g. ``<store>/runs``) stands for each of its runs; a
    pattern the shell left as it was (``'runs/*'``, or ``runs/*`` with no ``./runs``) is expanded
    here, in the working directory, else in the store (``runs/*`` = every run of the store)."""
    out: list[str] = []
    for ref in refs:
        path = Path(ref).expanduser()
        if not path.exists() and glob.has_magic(ref):
            out.extend(_matches(ref, store))
            continue
        if path.is_dir() and not rundir.is_run_dir(path):
            runs = runs_in(path)
            if runs:
                out.extend(str(p) for p in runs)
                continue
        out.append(ref)
    return out


def _matches(pattern: str, store: Store | None) -> list[str]:
    found = sorted(glob.glob(os.path.expanduser(pattern)))
    if not found and store is not None and not Path(pattern).is_absolute():
        found = sorted(glob.glob(str(store.root / pattern)))
    if not found:
        where = f" (nor under the store {store.root})" if store is not None else ""
        raise UsageError(
            f"nothing matches {pattern!r} here{where}; pass run directories, run names or files."
        )
    return found


def runs_in(path: Path) -> list[Path]:
    """The run directories directly inside ``path``, sorted."""
    return sorted(p for p in path.iterdir() if p.is_dir() and rundir.is_run_dir(p))


def named_run(store: Store, ref: str) -> Path | None:
    """The run directory ``ref`` names: a path to one (or to one of its files), or a run name in the
    store; None when it names no run."""
    path = Path(ref).expanduser()
    if path.is_file() and path.name in rundir.RUN_FILES:  # e.g. runs/*/summary.json
        path = path.parent
    if path.is_dir():
        return path if rundir.is_run_dir(path) else None
    if path.exists() or "/" in ref or not ref.strip("./"):
        return None
    try:
        named = store.run_dir(ref)
    except UsageError:  # not a possible run name
        return None
    return named if named.is_dir() and rundir.is_run_dir(named) else None


def _run_target(ref: str, run_dir: Path, which: str) -> Target:
    return Target(ref, "run", rundir.weights_path(run_dir, which), run_dir, rundir.read_config(run_dir))


def resolve(ref: str, store: Store, which: str, data_key: str | None, role: str | None = None) -> Target:
    """What ``ref`` names: a run directory, a run in the store, a weights file or a stored model.

    ``data_key`` is the data whose stored models a name may mean (None: no stored models); with a
    ``role`` (e.g. ``"model"``), a missing stored model says how to make one.
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        if not rundir.is_run_dir(path):
            raise UsageError(
                f"{path} is a directory but not a run directory (none of {', '.join(rundir.RUN_FILES)}); "
                "pass a run directory, a run name, a model name or a .safetensors file."
            )
        return _run_target(ref, path, which)
    if path.is_file():
        if path.suffix == ".safetensors":
            return Target(ref, "weights", path)
        if path.name in rundir.RUN_FILES:
            return _run_target(ref, path.parent, which)
        raise UsageError(f"{path} is not a .safetensors weights file or a file of a run directory.")
    run_dir = named_run(store, ref)
    if run_dir is not None:
        return _run_target(ref, run_dir, which)
    return _stored_model(ref, store, data_key, role)


def resolve_all(
    refs: list[str], store: Store, which: str, data_key: str | None, strict: bool = False
) -> tuple[list[Target], list[str]]:
    """Each of ``refs`` (after :func:`expand_targets`) resolved, and notes on the runs left out: a
    run without its ``which`` weights (stopped or still in its first epoch) is skipped unless
    ``strict``, or unless it was the only target."""
    expanded = expand_targets(list(refs), store)
    targets: list[Target] = []
    skipped: list[str] = []
    for ref in expanded:
        run_dir = named_run(store, ref)
        weights = run_dir / f"{which}.safetensors" if run_dir is not None else None
        if weights is not None and not weights.is_file() and not strict and len(expanded) > 1:
            skipped.append(f"{ref} (no {which}.safetensors)")
            continue
        targets.append(resolve(ref, store, which, data_key))
    if not targets:
        raise UsageError(
            f"none of the runs has {which} weights yet ({', '.join(skipped)}); evaluate them after their "
            "first epoch, or continue them with 'ekd train/distill --resume RUN'."
        )
    return targets, skipped


def _stored_model(ref: str, store: Store, data_key: str | None, role: str | None) -> Target:
    if ref.endswith(".safetensors"):
        raise UsageError(
            f"the {role + ' ' if role else ''}weights file {ref} does not exist; check the path."
        )
    canonical = canonical_model(ref) if is_registered_model(ref) else None
    if data_key is not None and role is not None:
        return Target(ref, "store", store.require_weights(ref, data_key, canonical, role))
    looked = [f"a directory {Path(ref).expanduser()}", f"a run {store.runs_dir() / ref}"]
    if data_key is not None:
        found = store.find_weights(ref, data_key, canonical)
        if found is not None:
            return Target(ref, "store", found)
        looked.append(f"a model {store.model_path(data_key, canonical or ref)}")
    raise UsageError(
        f"no target {ref!r}: looked for {', '.join(looked)}; pass a run directory, a run name, "
        "a model name in the store (with --data) or a .safetensors file."
    )


def find_trained(ref: str, config: Config, which: str = "best") -> tuple[Path, Path | None]:
    """The weights ``ref`` names under ``config`` and the run directory they belong to (None for a
    file or a stored model)."""
    target = resolve(ref, Store(config.store_root()), which, dataset_key(config), role="model")
    return target.weights, target.run_dir


def with_run_data(config: Config, run_values: dict[str, Any] | None) -> Config:
    """``config`` with the data a run was trained on (``run_values``: its config.toml), unless
    given as flags now."""
    if not run_values:
        return config
    changes = {
        key: run_values[key]
        for key in RUN_DATA_KEYS
        if key in run_values and config.sources.get(key, "default") != "flag"
    }
    if "data_options" in changes:
        changes["data_options"] = dict(changes["data_options"])
    return dataclasses.replace(config, **changes) if changes else config


def runs_among(store: Store, refs: list[str]) -> list[Path]:
    """The run directories among ``refs`` (run directories or their files, directories of runs,
    run names in the store); other references are left out."""
    runs: list[Path] = []
    for ref in refs:
        run_dir = named_run(store, ref)
        path = Path(ref).expanduser()
        if run_dir is not None:
            runs.append(run_dir)
        elif path.is_dir():
            runs += runs_in(path)
    return list(dict.fromkeys(runs))

"""The store: one directory holding trained/imported weights, score files and runs.

Layout (docs/architecture.md#the-store)::

    models/<dataset>/<model>.safetensors
    scores/<dataset>/<teacher>.safetensors
    cache/<dataset>/<teacher>.teacher-cache
    cache/evaluations/<key>.json
    runs/<run-name>/
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from ekdcli.util.errors import UsageError

_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(name: str) -> str:
    """A file-system-safe version of a user-given name (``timm/resnet18`` -> ``timm_resnet18``)."""
    cleaned = _SAFE.sub("_", name).strip("._")
    if not cleaned:
        raise UsageError(
            f"{name!r} cannot be used as a name in the store; use letters, digits, '-', '_' or '.'."
        )
    return cleaned


@dataclass(frozen=True)
class Store:
    root: Path

    def model_path(self, dataset: str, name: str) -> Path:
        return self.root / "models" / safe_name(dataset) / f"{safe_name(name)}.safetensors"

    def score_path(self, dataset: str, teacher: str) -> Path:
        return self.root / "scores" / safe_name(dataset) / f"{safe_name(teacher)}.safetensors"

    def partition_path(self, dataset: str, teacher: str, label: str) -> Path:
        return (
            self.root / "scores" / safe_name(dataset) / f"{safe_name(teacher)}.partition-{label}.safetensors"
        )

    def cache_path(self, dataset: str, teacher: str) -> Path:
        return self.root / "cache" / safe_name(dataset) / f"{safe_name(teacher)}.teacher-cache"

    def evaluation_cache_path(self, key: str) -> Path:
        """What ``ekd evaluate`` measured, by a hash of the weights, data and options."""
        return self.root / "cache" / "evaluations" / f"{safe_name(key)}.json"

    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_dir(self, run_name: str) -> Path:
        return self.runs_dir() / safe_name(run_name)

    def new_run_dir(self, run_name: str | None, default_prefix: str) -> Path:
        """``runs/<run-name>`` (refusing to overwrite a finished run) or a fresh timestamped name."""
        if run_name:
            path = self.run_dir(run_name)
            if (path / "summary.json").exists():
                raise UsageError(
                    f"run {run_name!r} already exists at {path}; choose another --run-name "
                    f"or continue it with --resume {path}."
                )
            return path
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.run_dir(f"{default_prefix}-{stamp}")
        suffix = 1
        while path.exists():
            suffix += 1
            path = self.run_dir(f"{default_prefix}-{stamp}-{suffix}")
        return path

    def find_weights(self, ref: str, dataset: str, canonical: str | None = None) -> Path | None:
        """A weights file for ``ref``: an existing path, else the store entry by name or canonical name."""
        as_path = Path(ref).expanduser()
        if ref.endswith(".safetensors") or as_path.is_file():
            return as_path if as_path.is_file() else None
        for name in dict.fromkeys(n for n in (ref, canonical) if n):
            candidate = self.model_path(dataset, name)
            if candidate.is_file():
                return candidate
        return None

    def require_weights(self, ref: str, dataset: str, canonical: str | None, role: str) -> Path:
        """Like :meth:`find_weights`, but a missing file says where it looked and how to make it."""
        found = self.find_weights(ref, dataset, canonical)
        if found is not None:
            return found
        if ref.endswith(".safetensors"):
            raise UsageError(f"the {role} weights file {ref} does not exist.")
        looked = self.model_path(dataset, canonical or ref)
        name = canonical or ref
        raise UsageError(
            f"no trained {role} {ref!r} for data {dataset!r} (looked at {looked}); create it with "
            f"'ekd train --model {name} --data {dataset}' or "
            f"'ekd import CHECKPOINT.pth --model {name} --data {dataset}'."
        )

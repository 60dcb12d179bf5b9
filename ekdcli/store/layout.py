"""The store: one directory holding trained/imported weights, score files and runs.

Layout (docs/architecture.md#the-store)::

    models/<dataset>/<model>.safetensors
    scores/<dataset>/<teacher>.safetensors
    cache/<dataset>/<teacher>.teacher-cache
    cache/evaluations/<key>.json
    runs/<run-name>/
    campaigns/<name>/          ekd sweep's record of a campaign (store/campaign.py), ekd report
"""

from __future__ import annotations

import contextlib
import itertools
import re
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ekdcli.store.locks import FileLock, lock_for
from ekdcli.store.rundir import CHECKPOINT, SUMMARY
from ekdcli.util.errors import UsageError

_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(name: str, what: str = "") -> str:
    """A file-system-safe version of a user-given name (``timm/resnet18`` -> ``timm_resnet18``);
    ``what`` (e.g. ``--name``) says where an unusable name came from."""
    cleaned = _SAFE.sub("_", name).strip("._")
    if not cleaned:
        raise UsageError(
            f"{what + ' ' if what else ''}{name!r} cannot be used as a name in the store; use letters, "
            "digits, '-', '_' or '.'."
        )
    return cleaned


def _run_lock(path: Path) -> FileLock:
    return FileLock(
        lock_for(path),
        f"run {path}",
        hint="wait for it to finish, or stop it first (then --resume continues it)",
    )


@dataclass
class RunClaim:
    """A run directory locked for the life of its writer; an empty one it created goes on release."""

    path: Path
    lock: FileLock
    created: bool

    def release(self) -> None:
        if self.created:
            with contextlib.suppress(OSError):  # only when nothing was written into it
                self.path.rmdir()
        self.lock.release()

    def __enter__(self) -> RunClaim:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


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

    def owned_dirs(self) -> tuple[Path, ...]:
        """The folders whose files the store writes itself (weights, scores, caches, runs, campaigns)."""
        return tuple(self.root / name for name in ("models", "scores", "cache", "runs", "campaigns"))

    def owns(self, path: str | Path) -> bool:
        """Whether ``path`` (after ``~`` and symlinks) lies in a folder the store writes itself."""
        target = Path(path).expanduser().resolve()
        for folder in self.owned_dirs():
            if target == folder.resolve() or folder.resolve() in target.parents:
                return True
        return False

    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_dir(self, run_name: str) -> Path:
        return self.runs_dir() / safe_name(run_name)

    def campaigns_dir(self) -> Path:
        return self.root / "campaigns"

    def campaign_dir(self, name: str) -> Path:
        return self.campaigns_dir() / safe_name(name)

    def check_run_target(self, run_name: str | None, resume: Path | None = None) -> Path | None:
        """Refuse, before any work, a run that could not start: ``--resume`` of a directory without
        a checkpoint or of a live run, a ``--run-name`` that is finished, holds a run or is live.

        Returns the run directory (None for a fresh dated name).  Touches nothing; :meth:`claim_run`
        checks again under the lock.
        """
        path = self._target(run_name, resume)
        if path is not None:
            _run_lock(path).ensure_free()
            self._check_target(path, resume is not None)
        return path

    def _target(self, run_name: str | None, resume: Path | None) -> Path | None:
        if resume is not None:
            return Path(resume)
        if not run_name:
            return None
        path = self.run_dir(safe_name(run_name, "--run-name"))
        if path.is_symlink() or (path.exists() and path.resolve().parent != self.runs_dir().resolve()):
            raise UsageError(
                f"{path} is a link (to {path.resolve()}); ekd writes a run only into a directory of its own "
                "in the store's runs: remove the link or choose another --run-name."
            )
        return path

    @staticmethod
    def _check_target(path: Path, resume: bool) -> None:
        if resume and not (path / CHECKPOINT).is_file():
            raise UsageError(
                f"{path} holds no {CHECKPOINT}, so there is nothing to resume (it is not a run "
                "directory, or its run never finished an epoch); start a new run without --resume."
            )
        if not resume and (path / SUMMARY).exists():
            raise UsageError(
                f"run {path.name!r} already exists at {path}; choose another --run-name "
                f"or continue it with --resume {path}."
            )
        if not resume and (path / CHECKPOINT).exists():
            raise UsageError(
                f"{path} already holds a run; resume it with --resume {path} or choose another --run-name."
            )

    def claim_run(self, run_name: str | None, default_prefix: str, resume: Path | None = None) -> RunClaim:
        """Lock the run directory for this writer: ``--resume`` target, ``runs/<run-name>``, or a
        fresh dated name created exclusively (a name taken the same second gets a suffix)."""
        path = self._target(run_name, resume)
        if path is None:
            return self._claim_dated(default_prefix)
        lock = _run_lock(path).acquire()
        try:
            self._check_target(path, resume is not None)  # again, now that no other writer can start
            created = not path.exists()
            path.mkdir(parents=True, exist_ok=True)
        except BaseException:
            lock.release()
            raise
        return RunClaim(path, lock, created)

    def _claim_dated(self, prefix: str) -> RunClaim:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.runs_dir().mkdir(parents=True, exist_ok=True)
        for suffix in itertools.count(1):
            path = self.run_dir(f"{prefix}-{stamp}" + (f"-{suffix}" if suffix > 1 else ""))
            try:
                path.mkdir()  # exclusive: two runs started in the same second never share a directory
            except FileExistsError:
                continue
            return RunClaim(path, _run_lock(path).acquire(), created=True)
        raise AssertionError("unreachable")

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

"""Advisory file locks (``fcntl.flock``): held while a process lives, released by the kernel when it
dies (even by kill -9), so a stale lock never blocks anyone.  Where ``fcntl`` does not exist
(Windows) the locks are no-ops."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class Locked(Exception):
    """The lock is held by another process (``pid`` when it wrote one)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        super().__init__(f"{path} is locked by {pid or 'another process'}")
        self.path = path
        self.pid = pid


def holder(path: Path) -> int | None:
    """The PID written in a lock file that a live process holds, else None (free, or no file)."""
    if fcntl is None or not path.is_file():
        return None
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_pid(path) or -1
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return None


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def exclusive(path: Path, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) and write this PID into it.

    ``wait=False`` raises :class:`Locked` at once when another process holds it; ``wait=True``
    blocks until it is free.
    """
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        flags = fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(handle.fileno(), flags)
        except OSError:
            raise Locked(path, _read_pid(path)) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

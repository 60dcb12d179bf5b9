"""Locks held by the process that writes a run directory or a store file, for as long as it writes.

A lock is an ``fcntl.flock`` on a small lock file beside what it guards (``runs/.<run>.lock``,
``models/<data>/.<name>.safetensors.lock``) that holds the holder's PID and host.  The kernel drops
the lock when its process ends, however it ends (kill -9 included), so a lock of a dead process is
simply taken over by the next writer; a holder removes its lock file when it lets go, and takes
away the lock files that dead processes left in its directory.  A second writer is refused at
once with a sentence naming the holder's PID (:class:`FileLock` with ``wait=0``), or waits for it
(score files and the teacher cache, which the second process then reuses).

Only the writing process takes locks: under DDP that is rank 0.  Without ``fcntl`` (Windows) the
locks do nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from ekdcli.util.errors import UsageError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, no locking
    fcntl = None  # type: ignore[assignment]

# A holder writes its PID right after taking the lock; a contender that reads an empty file waits
# this long for it before naming the holder as unknown.
_PID_WAIT_S = 0.5
# Even a refusing acquire retries this long: a probe (ensure_free) holds the lock for an instant.
_GRACE_S = 0.2
_POLL_S = 0.02


def lock_for(path: str | os.PathLike[str]) -> Path:
    """The lock file of a store file or a run directory: ``.<name>.lock`` beside it."""
    target = Path(path)
    return target.with_name(f".{target.name}.lock")


def _host() -> str:
    return socket.gethostname() or "?"


def _read_holder(fd: int) -> tuple[int | None, str]:
    """(PID, host) recorded in an open lock file; (None, "") while it is still empty."""
    try:
        text = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
    except OSError:
        return None, ""
    if not text or not text[0].isdigit():
        return None, ""
    return int(text[0]), (text[1] if len(text) > 1 else "")


def _describe(pid: int | None, host: str) -> str:
    if pid is None:
        return "another process"
    return f"process {pid}" + (f" on {host}" if host and host != _host() else "")


class FileLock:
    """An exclusive lock on ``path`` (the lock file itself) for ``what`` (named in the refusal).

    ``wait`` is how many seconds to wait for a holder before refusing (0: refuse at once; the
    default).  Use as a context manager, or call :meth:`acquire` / :meth:`release`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        what: str,
        *,
        wait: float = 0.0,
        hint: str = "",
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.what = what
        self.wait = wait
        self.hint = hint or "wait for it to finish, or stop it first"
        self.on_wait = on_wait  # told once who holds the lock when acquire() has to wait
        self.fd: int | None = None
        self.taken_over: int | None = None  # PID of a dead holder whose lock file this one reused

    def acquire(self) -> FileLock:
        if fcntl is None or self.fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + max(self.wait, _GRACE_S)
        waiting = self.on_wait if self.wait > _GRACE_S else None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            if self._locked(fd):
                return self
            if time.monotonic() >= deadline:
                self._refuse(fd)
            pid, host = _read_holder(fd)
            if waiting is not None and pid is not None:
                waiting(_describe(pid, host))
                waiting = None
            os.close(fd)
            time.sleep(_POLL_S)

    def _locked(self, fd: int) -> bool:
        """Try to lock ``fd``; True (and ``fd`` kept) when it is ours and still the file at ``path``."""
        assert fcntl is not None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None
        if current is None or not os.path.samestat(current, os.fstat(fd)):
            os.close(fd)  # the previous holder removed this file as we opened it: take the new one
            return False
        self.taken_over, _ = _read_holder(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {_host()}\n".encode(), 0)
        self.fd = fd
        sweep_stale_locks(self.path.parent)
        return True

    def _refuse(self, fd: int) -> None:
        """Raise the refusal naming the holder of the lock on ``fd`` (closed here)."""
        try:
            deadline = time.monotonic() + _PID_WAIT_S
            pid, host = _read_holder(fd)
            while pid is None and time.monotonic() < deadline:  # the holder is about to write its PID
                time.sleep(_POLL_S)
                pid, host = _read_holder(fd)
        finally:
            os.close(fd)
        raise UsageError(
            f"{self.what} is being written by {_describe(pid, host)} ({self.path}); {self.hint}."
        )

    def ensure_free(self) -> None:
        """Refuse now, as :meth:`acquire` would, when a live process holds the lock.

        A shared, non-blocking probe that never creates the file, so it neither disturbs a holder
        nor leaves anything behind: for checks before any work, ahead of the real acquire.
        """
        if fcntl is None or self.fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            self._refuse(fd)
        os.close(fd)

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # while still locked: a waiter that opened it sees it gone and retries
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def sweep_stale_locks(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove the lock files in ``directory`` that no live process holds (left by killed writers)."""
    removed: list[Path] = []
    if fcntl is None:
        return removed
    try:
        names = [e.name for e in os.scandir(directory) if e.name.startswith(".") and e.name.endswith(".lock")]
    except OSError:
        return removed
    for name in names:
        path = Path(directory) / name
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.path.samestat(os.stat(path), os.fstat(fd)):
                path.unlink()
                removed.append(path)
        except OSError:  # held (BlockingIOError), or removed meanwhile
            pass
        finally:
            os.close(fd)
    return removed

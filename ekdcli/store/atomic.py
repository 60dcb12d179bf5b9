"""Atomic file writes: a crash never leaves a half-written file in place of a good one.

The temporary file is named ``.<target>.ekd-<host>-<pid>-<random>.tmp``: a process killed
mid-write (kill -9, power loss) leaves it behind, and the next write into that directory removes
the ones whose process is gone (:func:`sweep_stale_temps`).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import socket
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ekdcli.util.errors import JobError


@functools.cache
def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file under this process's umask (mkstemp's is always 0600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@functools.cache
def _host_tag() -> str:
    return re.sub(r"\W", "_", socket.gethostname()) or "host"


_TEMP = re.compile(r"\.ekd-(?P<host>\w+)-(?P<pid>\d+)-\w+\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_stale_temps(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that writers on this host left in ``directory`` when they died."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        found = _TEMP.search(entry.name)
        if found and found["host"] == _host_tag() and not _alive(int(found["pid"])):
            try:
                os.unlink(entry.path)
            except OSError:
                continue  # another sweeper got there first, or the directory is read-only
            removed.append(Path(entry.path))
    return removed


_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it over ``path``.

    If ``write`` raises, the temporary file is removed and ``path`` is untouched.  The file
    gets the permissions of the file it replaces, else those of any newly created file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(target.parent)
    prefix = f".{target.name}.ekd-{_host_tag()}-{os.getpid()}-"
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else _new_file_mode()
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in _NO_ROOM:  # disk full, quota, read-only: say so
            raise JobError(
                f"could not write {target} ({exc.strerror or exc}); free some space or check the "
                f"permissions of {target.parent}, then run the command again (the previous file is kept)."
            ) from exc
        raise
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    def write(tmp: str) -> None:
        Path(tmp).write_bytes(data)

    return atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    def write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")

    return atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def append_jsonl(path: str | os.PathLike[str], obj: Any) -> Path:
    """Append one JSON line by rewriting the file atomically (metrics files are small)."""
    target = Path(path)
    old = target.read_text(encoding="utf-8") if target.exists() else ""
    return atomic_write_text(target, old + json.dumps(obj, sort_keys=True, default=str) + "\n")

"""Advisory file locks: held while a process lives, refused (or waited for) meanwhile, released by its death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ekdcli.store import lockfile

pytestmark = pytest.mark.skipif(lockfile.fcntl is None, reason="no fcntl (Windows): locks are no-ops")

HOLD = "import sys, time\nfrom pathlib import Path\nfrom ekdcli.store import lockfile\nwith lockfile.exclusive(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(600)\n"


def test_a_held_lock_is_refused_with_its_pid_and_free_after(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    assert lockfile.holder(path) is None
    with lockfile.exclusive(path):
        assert lockfile.holder(path) == os.getpid()
        with pytest.raises(lockfile.Locked) as info, lockfile.exclusive(path):
            pass
        assert info.value.pid == os.getpid()
    assert lockfile.holder(path) is None
    with lockfile.exclusive(path):  # free again
        pass


def test_kill_9_of_the_holder_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    assert lockfile.holder(path) == holder.pid
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    deadline = time.monotonic() + 10
    while lockfile.holder(path) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lockfile.holder(path) is None  # the file still names the dead PID; the lock is free
    with lockfile.exclusive(path):
        assert lockfile.holder(path) == os.getpid()

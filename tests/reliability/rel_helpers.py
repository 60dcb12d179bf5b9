"""Helpers of the reliability suite: a byte-for-byte snapshot, the one-line refusal, processes.

Every failing case asserts the same three things (docs/reliability.md): the exit code, one line on
stderr that starts with ``error:`` and names the cause (no traceback), and a workspace -- the store
and every other file -- byte-identical before and after (file names and sha256 hashes).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# The prepared store: data "fake" (512/128 synthetic images, 10 classes), a tiny teacher, its
# score file and one finished training run.
DATA = ("--data", "fake")
SMALL = ("--limit-train", "32", "--limit-test", "16", "--batch-size", "16", "--epochs", "1")
TEACHER = "models/fake/tiny_cnn.safetensors"
SCORES = "scores/fake/tiny_cnn.safetensors"
RUN = "runs/done"


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` by relative name, with its sha256: what "byte-identical" compares."""
    if not root.exists():
        return {}
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def one_line_error(code: int, err: str, expected_code: int, *fragments: str) -> str:
    """Assert a refusal: the exit code, one ``error:`` line naming the cause, no traceback."""
    assert code == expected_code, (code, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def dead_pid() -> int:
    """The PID of a process that has just exited (a writer killed before it cleaned up)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def ekd_process(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    """``ekd ARGS`` as a separate process (the real concurrency and kill -9 tests)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **kwargs.pop("env", {})}
    return subprocess.Popen(
        [sys.executable, "-m", "ekdcli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )

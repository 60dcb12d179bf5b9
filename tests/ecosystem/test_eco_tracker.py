"""A third-party tracker is one small file: the one in docs/plugins.md, installed as a plugin, tracks a run."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def guide_tracker() -> str:
    """The guide's code block whose first line is ``# ekd_jsonlines.py``."""
    (body,) = re.findall(
        r"```python\n# ekd_jsonlines\.py\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.DOTALL
    )
    return body


def _flat(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


@pytest.mark.slow
def test_the_guides_one_file_tracker_records_a_run(
    install_fake_plugin: Callable[[str, str, str], Path], run_ekd: Callable[..., Any], tmp_path: Path
) -> None:
    site = install_fake_plugin("ekd-jsonlines", "ekd_jsonlines", guide_tracker())
    listed = run_ekd("list", "trackers", "--json", extra_path=site)
    assert listed.returncode == 0, listed.stderr
    assert {"name": "jsonlines", "plugin": "ekd-jsonlines"}.items() <= next(
        item for item in json.loads(listed.stdout) if item["name"] == "jsonlines"
    ).items()
    args = ("train", "--model", "tiny_cnn", "--epochs", "2", "--limit-train", "64", "--limit-test", "32")
    done = run_ekd(*args, "--track", "jsonlines", "--run-name", "lines", "--quiet", extra_path=site)
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "store" / "runs" / "lines"
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["start", "epoch", "epoch", "finish"]
    config = tomllib.loads((run_dir / "config.toml").read_text())
    assert events[0]["params"] == {
        k: v if isinstance(v, str) else json.dumps(v) for k, v in _flat(config).items()
    }
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e["record"] for e in events[1:3]] == metrics
    assert events[3]["status"] == "finished"
    assert events[3]["summary"] == json.loads((run_dir / "summary.json").read_text())
    assert events[3]["files"] == ["best", "config", "curves", "last", "log", "summary"]

"""A campaign grows: more seeds, configs or grid values join it, only the new runs train, and the
report covers them all; anything else that differs is still refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

TINY = 'method = "ce"\nstudent = "tiny_cnn"\nteacher = "tiny_cnn"\nepochs = 1\nlimit_train = 64\nlimit_test = 32\n'


def _configs(folder: Path) -> tuple[str, str]:
    (folder / "a.toml").write_text(TINY)
    (folder / "b.toml").write_text(TINY + "lr = 0.02\n")
    return str(folder / "a.toml"), str(folder / "b.toml")


def test_more_seeds_configs_and_grid_values_grow_the_campaign(tmp_path: Path, ekd: Any) -> None:
    a, b = _configs(tmp_path)
    code, _, err = ekd("sweep", a, "--seeds", "0", "--grid", "epochs=1", "--name", "g", "--dry-run")
    assert code == 0, err
    from ekdcli.campaign.campaign import define
    from ekdcli.store.layout import Store

    campaign_dir, definition, texts = define(
        Store(tmp_path / "store"), [a], [0], [("epochs", ["1"])], [], "g"
    )
    campaign_dir.write_definition({**definition, "threads": 1}, texts)
    finished = campaign_dir.run_dir("a-epochs1-seed0")
    finished.mkdir(parents=True)
    (finished / "summary.json").write_text(json.dumps({"best_top1": 0.5}))
    code, out, err = ekd("sweep", a, b, "--seeds", "0,1", "--grid", "epochs=1,2", "--name", "g", "--dry-run")
    assert code == 0, err
    assert "campaign g (grown by config b, seed 1, epochs=2): 8 runs from 2 config file(s)" in out
    assert "  a-epochs1-seed0  done" in out and "would run: 7 run(s) to do" in out
    code, _, err = ekd("sweep", a, "--seeds", "1", "--grid", "epochs=1", "--name", "g", "--dry-run")
    assert code == 2 and "already exists with other --seeds" in err  # a seed dropped: not a growth
    Path(a).write_text(TINY + "lr = 0.5\n")
    code, _, err = ekd("sweep", a, "--seeds", "0,1", "--grid", "epochs=1", "--name", "g", "--dry-run")
    assert code == 2 and "already exists with a.toml changed" in err  # an edited config is another campaign


@pytest.mark.slow
def test_a_grown_campaign_trains_only_its_new_runs_and_reports_them_all(tmp_path: Path) -> None:
    a, b = _configs(tmp_path)
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if k != "EKD_HOME"}

    def ekd_(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "ekdcli", *args, "--store", str(store)]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    first = ekd_("sweep", a, "--seeds", "0", "--name", "g")
    assert first.returncode == 0, first.stdout + first.stderr
    weights = store / "runs" / "g.a-seed0" / "last.safetensors"
    before = weights.stat().st_mtime_ns
    grown = ekd_("sweep", a, b, "--seeds", "0,1", "--name", "g")
    assert grown.returncode == 0, grown.stdout + grown.stderr
    assert "grown by config b, seed 1" in grown.stdout
    assert grown.stdout.count(" started  ") == 3 and "started  a-seed0" not in grown.stdout
    assert weights.stat().st_mtime_ns == before  # the finished run was not trained again
    report = ekd_("report", "g", "--json")
    assert report.returncode == 0, report.stderr
    cells = json.loads(report.stdout)["table"]["cells"]
    assert sorted(c["top1"]["n"] for c in cells) == [2, 2]

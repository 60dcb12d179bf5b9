"""``ekd report`` on the reference campaign: its numbers are ``ekd evaluate``'s, and ``--paper table5``
(CIFAR-100) is refused for its digits runs (test_report_paper.py shows the paper's columns)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
from campaign_helpers import NAME, RUNS, Reference

pytestmark = pytest.mark.slow


def test_report_numbers_equal_ekd_evaluate(reference: Reference, ekd: Any) -> None:
    code, out, err = ekd("report", NAME, "--store", str(reference.store), "--json")
    assert code == 0, err
    report = json.loads(out)
    runs = [str(reference.run_dir(reference.store, run)) for run in RUNS]
    # the test images the runs were measured on (limit_test = 128)
    code, out, err = ekd("evaluate", *runs, "--store", str(reference.store), "--limit-test", "128", "--json")
    assert code == 0, err
    evaluation = json.loads(out)
    groups = {frozenset(group["targets"]): group for group in evaluation["groups"]}
    per_run = {target["run_dir"]: target["top1"] for target in evaluation["targets"]}
    cells = report["table"]["cells"]
    assert len(cells) == 2 and sorted(report["table"]["rows"]) == ["kd", "kd + he-cutmix 50%"]
    assert report["table"]["columns"] == ["resnet56->resnet20"]
    for cell in cells:
        assert cell["top1"] == groups[frozenset(cell["runs"])]["top1"]  # evaluate's very numbers
        values = [per_run[run] for run in cell["runs"]]  # and the formula, from the runs themselves
        assert cell["top1"]["n"] == 2 == len(values)
        assert cell["top1"]["mean"] == pytest.approx(statistics.fmean(values), abs=1e-12)
        assert cell["top1"]["std"] == pytest.approx(statistics.stdev(values), abs=1e-12)
    assert report["files"]["json"] == str(reference.store / "campaigns" / NAME / "report.json")
    # evaluated 2 at once (the campaign's --jobs), on the 128 test images the runs were measured on
    logs = reference.store / "campaigns" / NAME / "logs"
    assert (logs / "evaluate-0.log").is_file() and (logs / "evaluate-1.log").is_file()
    assert report["test_images"] == "the first 128 test images, the ones the runs were measured on"
    assert sorted(v["seed"] for c in cells for v in c["values"]) == [0, 0, 1, 1]  # per-run values


def test_a_campaign_name_wins_over_a_folder_of_that_name(
    reference: Reference, ekd: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / NAME).mkdir()
    code, out, err = ekd(
        "report", NAME, "--store", str(reference.store), "--json", "--out", str(tmp_path / "r")
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["title"] == f"campaign {NAME}" and len(report["table"]["cells"]) == 2
    assert f"./{NAME} exists too; this is campaign {NAME}" in report["notes"][0]


def test_a_paper_table_of_another_setting_is_refused(reference: Reference, ekd: Any) -> None:
    folder = reference.store / "campaigns" / NAME
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("report.*")}
    code, _, err = ekd("report", NAME, "--store", str(reference.store), "--paper", "table5")
    assert code == 2
    assert "table5 of the paper is on cifar100; none of the 4 run(s) is (they are on digits)" in err
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("report.*")} == before  # nothing written


def test_two_campaigns_with_the_same_runs_count_each_run_once(
    reference: Reference, ekd: Any, tmp_path: Path
) -> None:
    import shutil

    store = tmp_path / "store"
    shutil.copytree(reference.store, store)
    shutil.copytree(store / "campaigns" / NAME, store / "campaigns" / "again")
    for run in RUNS:  # the same configs and seeds, run again under another campaign's name
        shutil.copytree(store / "runs" / f"{NAME}.{run}", store / "runs" / f"again.{run}")
    code, out, err = ekd(
        "report", NAME, "again", "--store", str(store), "--json", "--out", str(tmp_path / "r")
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["title"] == f"campaigns {NAME}, again"
    assert sorted(c["top1"]["n"] for c in report["table"]["cells"]) == [2, 2]  # not 4: seeds 0 and 1
    assert report["table"]["notes"][0].startswith("4 run(s) repeat another run's configuration and seed")

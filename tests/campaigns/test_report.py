"""``ekd report`` on the reference campaign: its numbers are ``ekd evaluate``'s, and ``--paper table5``
puts the paper's column and the difference beside them."""

from __future__ import annotations

import csv
import io
import json
import statistics
from typing import Any

import pytest
from campaign_helpers import NAME, RUNS, Reference

pytestmark = pytest.mark.slow


def test_report_numbers_equal_ekd_evaluate(reference: Reference, ekd: Any) -> None:
    code, out, err = ekd("report", NAME, "--store", str(reference.store), "--json")
    assert code == 0, err
    report = json.loads(out)
    runs = [str(reference.run_dir(reference.store, run)) for run in RUNS]
    code, out, err = ekd("evaluate", *runs, "--store", str(reference.store), "--json")
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


def test_paper_table5_shows_the_papers_column_and_the_difference(reference: Reference, ekd: Any) -> None:
    code, out, err = ekd("report", NAME, "--store", str(reference.store), "--paper", "table5")
    assert code == 0, err
    folder = reference.store / "campaigns" / NAME
    markdown = (folder / "report.md").read_text()
    assert markdown in out  # the terminal shows the same table
    assert "| row | resnet56->resnet20 | paper | Δ |" in markdown
    data = json.loads((folder / "report.json").read_text())
    paper = {"kd": 70.66, "kd + he-cutmix 50%": 71.26}  # the paper's Table 5, ResNet56 -> ResNet20
    for cell in data["table"]["cells"]:
        mean, std = cell["top1"]["mean"], cell["top1"]["std"]
        expected = paper[cell["row"]]
        assert cell["paper"] == pytest.approx(expected / 100)
        assert cell["diff"] == pytest.approx(mean - expected / 100)
        line = f"| {cell['row']} | {100 * mean:.2f} ± {100 * std:.2f} (n=2) | {expected:.2f} | {100 * mean - expected:+.2f} |"
        assert line in markdown
    rows = list(csv.DictReader(io.StringIO((folder / "report.csv").read_text())))
    assert {(r["row"], float(r["paper"])) for r in rows} == {(k, v / 100) for k, v in paper.items()}
    assert (folder / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

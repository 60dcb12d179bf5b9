"""Where `ekd report` places a run without a teacher: beside the pairs that share its student."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ekdcli.campaign.report import _baselines_beside_their_pairs
from ekdcli.util.errors import UsageError


def cell(teacher: str, student: str, row: str, data: str = "cifar100") -> dict[str, Any]:
    return {"row": row, "pair": (teacher, student), "data": data, "top1": {"mean": 0.5}}


def test_a_baseline_goes_into_every_column_of_its_student_and_data() -> None:
    cells = [
        cell("resnet20", "resnet8", "kd"),
        cell("resnet56", "resnet8", "kd"),
        cell("wrn_40_2", "wrn_16_2", "kd"),
        cell("-", "resnet8", "ce"),
        cell("-", "resnet8", "ce", data="cifar10"),  # no pair on cifar10: a column of its own
    ]
    placed = _baselines_beside_their_pairs(cells)
    assert sorted((c["row"], c["pair"], c["data"]) for c in placed) == [
        ("ce", ("-", "resnet8"), "cifar10"),
        ("ce", ("resnet20", "resnet8"), "cifar100"),
        ("ce", ("resnet56", "resnet8"), "cifar100"),
        ("kd", ("resnet20", "resnet8"), "cifar100"),
        ("kd", ("resnet56", "resnet8"), "cifar100"),
        ("kd", ("wrn_40_2", "wrn_16_2"), "cifar100"),
    ]
    assert cells[3]["pair"] == ("-", "resnet8")  # the input cells are left as they were


def test_report_finds_runs_with_the_one_resolver(tmp_path: Path) -> None:
    """A run given by path, by one of its files or by name in the store; anything else: report's sentence."""
    from ekdcli.campaign.report import _run_dir
    from ekdcli.store.layout import Store

    store = Store(tmp_path / "store")
    run = store.runs_dir() / "r1"
    run.mkdir(parents=True)
    (run / "config.toml").write_text('model = "resnet8"\n')
    assert _run_dir(store, str(run)) == run
    assert _run_dir(store, str(run / "config.toml")) == run
    assert _run_dir(store, "r1") == store.run_dir("r1")
    for ref in ("r2", str(tmp_path / "nowhere"), "./"):
        with pytest.raises(UsageError) as caught:
            _run_dir(store, ref)
        assert str(caught.value) == (
            f"{ref} is neither a campaign in {store.root} nor a run directory or run name; ekd report takes "
            "a campaign name or runs (see 'ekd sweep --status NAME')."
        )

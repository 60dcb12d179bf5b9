"""``ekd report --paper``: the paper's number only for runs of the table's setting (data and
long-tail settings, pair, full method with its temperature rule), rows in the paper's order, a
table no run matches refused, and repeated runs of merged campaigns counted once.  The runs are
fabricated (a summary and a config each), so nothing is trained; the feature methods (at, crd,
reviewkd, ...) are names in the data, not registered plugins."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from ekdcli.campaign.paper import table
from ekdcli.campaign.report import build_table, check_paper_setting, markdown
from ekdcli.config import dumps_toml
from ekdcli.util.errors import UsageError

LT = {"imbalance_factor": 0.5, "profile": "exp"}


def fake_run(folder: Path, name: str, **settings: Any) -> Path:
    """A finished run directory as `ekd distill` leaves it, as far as the report reads it."""
    run = folder / name
    run.mkdir(parents=True)
    method, rule = settings.get("method", "kd"), settings.get("rule", "fixed")
    teacher, student = settings.get("pair", ("resnet32x4", "resnet8x4"))
    data = settings.get("data", "cifar100")
    summary = {
        "objective": {"distiller": {"method": method, "temperature_rule": rule}},
        "metadata": {"teacher": teacher, "arch": student, "dataset": data},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    config = {"data": data, "method": method, "seed": settings.get("seed", 0), "teacher": teacher}
    config["temperature_rule"] = rule
    if settings.get("options"):
        config["data_options"] = settings["options"]
    (run / "config.toml").write_text(dumps_toml(config))
    return run


def evaluation(runs: list[tuple[Path, float]]) -> dict[str, Any]:
    """What `ekd evaluate` returns for these runs, grouped by configuration (its seed aside)."""
    targets, groups = [], {}
    for run, top1 in runs:
        targets.append({"target": str(run), "run_dir": str(run), "top1": top1, "run": {"best_top1": top1}})
        config = json.loads(json.dumps(__import__("tomllib").loads((run / "config.toml").read_text())))
        config.pop("seed")
        groups.setdefault(json.dumps(config, sort_keys=True), []).append(str(run))
    return {
        "targets": targets,
        "groups": [{"configuration": json.loads(k), "targets": v} for k, v in groups.items()],
    }


def result(table_: dict[str, Any], paper: str) -> dict[str, Any]:
    p = table(paper)
    return {"title": "t", "which": "best", "table": table_, "skipped": [],
            "paper": {"table": p.name, "title": p.title, "note": p.note}}  # fmt: skip


def test_long_tail_numbers_only_for_long_tail_runs_and_the_full_method(tmp_path: Path) -> None:
    runs = [
        (fake_run(tmp_path, "dkd", method="dkd", data="cifar100-lt", options=LT), 0.70),
        (fake_run(tmp_path, "kd-energy", method="kd", rule="energy", data="cifar100-lt", options=LT), 0.72),
        (fake_run(tmp_path, "reviewkd", method="reviewkd", rule=None, data="cifar100-lt", options=LT), 0.71),
        (fake_run(tmp_path, "kd", method="kd", data="cifar100-lt", options=LT), 0.69),
        (fake_run(tmp_path, "plain", method="kd", data="cifar100"), 0.75),
        (fake_run(tmp_path, "other-pair", method="kd", data="cifar100-lt", options=LT, pair=("resnet56", "resnet20")), 0.6),
    ]  # fmt: skip
    paper = table("table7")
    built = build_table(evaluation(runs), paper)
    cells = {(c["row"], c["pair"], c["data"]): c for c in built["cells"]}
    pair = ("resnet32x4", "resnet8x4")
    assert cells[("energy_kd", pair, "cifar100-lt")]["paper"] == pytest.approx(0.7397)  # kd + energy rule
    assert cells[("kd", pair, "cifar100-lt")]["paper"] == pytest.approx(0.7251)
    assert cells[("reviewkd", pair, "cifar100-lt")]["paper"] == pytest.approx(0.7342)
    assert cells[("kd", pair, "cifar100")]["paper"] is None  # balanced CIFAR-100: not Table 7's setting
    assert cells[("kd", ("resnet56", "resnet20"), "cifar100-lt")]["paper"] is None
    assert built["rows"] == ["kd", "dkd", "reviewkd", "energy_kd"]  # the paper's order
    text = markdown(result(built, "table7"))
    assert (
        "runs on cifar100 are not compared: table7 is on cifar100-lt (imbalance_factor 0.5, profile exp)"
        in text
    )
    assert "has no column for resnet56->resnet20 [cifar100-lt]" in text
    other = fake_run(tmp_path, "lt001", method="kd", data="cifar100-lt", options={"imbalance_factor": 0.01})
    with pytest.raises(
        UsageError,
        match=r"table7 of the paper is on cifar100-lt \(imbalance_factor 0.5, profile exp\); none of the 2 run\(s\)",
    ):
        check_paper_setting(paper, [other, runs[4][0]])
    check_paper_setting(
        paper, [fake_run(tmp_path, "lt", data="cifar100-lt", options={"imbalance_factor": 0.5})]
    )


def test_an_imagenet_table_is_refused_for_cifar_runs_and_figure2_without_a_rate_sweep(tmp_path: Path) -> None:
    run = fake_run(tmp_path, "kd")
    with pytest.raises(
        UsageError,
        match=r"table3 of the paper is on imagenet; none of the 1 run\(s\) is \(they are on cifar100\)",
    ):
        check_paper_setting(table("table3"), [run])
    with pytest.raises(
        UsageError, match=r"figure2 of the paper plots accuracy over the rate r; these runs sweep no rate"
    ):
        check_paper_setting(table("figure2"), [run])


def test_table3_shows_the_feature_methods_beside_the_papers_numbers(tmp_path: Path) -> None:
    pair = ("imagenet/resnet34", "imagenet/resnet18")
    runs = [
        (fake_run(tmp_path, m, method=m, rule=None, data="imagenet", pair=pair), 0.5 + i / 100)
        for i, m in enumerate(("energy_dkd", "reviewkd", "crd", "ofd", "at"))
    ]
    runs[0] = (
        fake_run(tmp_path, "edkd", method="energy_dkd", rule="energy", data="imagenet", pair=pair),
        0.5,
    )
    check_paper_setting(table("table3"), [r for r, _ in runs])
    built = build_table(evaluation(runs[1:] + runs[:1]), table("table3"))
    assert built["rows"] == ["at", "ofd", "crd", "reviewkd", "energy_dkd"]
    paper = {"at": 70.69, "ofd": 70.81, "crd": 71.17, "reviewkd": 71.61, "energy_dkd": 72.21}
    for cell in built["cells"]:
        assert cell["paper"] == pytest.approx(paper[cell["row"]] / 100)
        assert cell["diff"] == pytest.approx(cell["top1"]["mean"] - paper[cell["row"]] / 100)
    text = markdown(result(built, "table3"))
    assert "| at | 54.00 (n=1) | 70.69 | -16.69 |" in text


def test_identical_runs_of_merged_campaigns_count_once(tmp_path: Path) -> None:
    a = [fake_run(tmp_path / "a", f"kd-seed{s}", seed=s) for s in (0, 1)]
    b = [fake_run(tmp_path / "b", f"kd-seed{s}", seed=s) for s in (0, 1)]
    c = fake_run(tmp_path / "b", "kd-seed2", seed=2)
    values = {a[0]: 0.70, a[1]: 0.72, b[0]: 0.70, b[1]: 0.72, c: 0.75}
    built = build_table(evaluation(list(values.items())), None)
    (cell,) = built["cells"]
    expected = [0.70, 0.72, 0.75]  # seeds 0, 1 (once each) and 2
    assert cell["top1"]["n"] == 3
    assert cell["top1"]["mean"] == pytest.approx(statistics.fmean(expected))
    assert cell["top1"]["std"] == pytest.approx(statistics.stdev(expected))
    assert [v["seed"] for v in cell["values"]] == [0, 1, 2]  # the per-run values, for report.json
    assert cell["repeats"] == [str(b[0]), str(b[1])]
    assert (
        "2 run(s) repeat another run's configuration and seed (merged campaigns) and are counted once"
        in (built["notes"][0])
    )


def test_paper_marks_far_above_small_scale_bars_get_their_own_axis(tmp_path: Path) -> None:
    from ekdcli.campaign.report_figure import draw, separate_axis

    assert separate_axis([20.0, 25.0], [73.0, 75.0]) and not separate_axis([70.0], [73.0])
    runs = [(fake_run(tmp_path, "kd", data="cifar100-lt", options=LT), 0.2)]
    built = build_table(evaluation(runs), table("table7"))
    path = draw(result(built, "table7"), tmp_path / "report.png", "bars")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_earlier_report_is_kept(tmp_path: Path) -> None:
    from ekdcli.campaign.report import keep_earlier

    assert keep_earlier(tmp_path) is None
    for suffix in ("md", "csv", "json", "png"):
        (tmp_path / f"report.{suffix}").write_text(suffix)
    folder = keep_earlier(tmp_path)
    assert folder is not None and folder.parent == tmp_path / "reports"
    assert sorted(p.name for p in folder.iterdir()) == [
        "report.csv",
        "report.json",
        "report.md",
        "report.png",
    ]
    assert (folder / "report.md").read_text() == "md" and not (tmp_path / "report.md").exists()


def test_the_report_evaluates_the_test_images_the_runs_were_measured_on(tmp_path: Path) -> None:
    from ekdcli.campaign.report_eval import measured_images

    def run(name: str, limit: int | None) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.toml").write_text(dumps_toml({"data": "digits", "limit_test": limit}))
        return folder

    a, b, c = run("a", 32), run("b", 32), run("c", None)
    assert measured_images([a, b]).limit == 32 and "the first 32 test images" in measured_images([a, b]).note
    assert measured_images([c]).limit is None
    mixed = measured_images([a, c])
    assert mixed.limit is None and "different test subsets (all, 32)" in mixed.note

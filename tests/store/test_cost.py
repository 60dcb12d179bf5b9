"""The cost estimate of planned runs, from the speeds the store's runs recorded."""

from __future__ import annotations

import json
from pathlib import Path

from ekdcli.jobs.cost import PlannedRun, estimate, recorded_speed
from ekdcli.store.layout import Store


def _run(store: Store, name: str, student: str, data: str, speeds: list[float]) -> None:
    run = store.runs_dir() / name
    run.mkdir(parents=True)
    (run / "config.toml").write_text(f'student = "{student}"\ndata = "{data}"\n')
    lines = [json.dumps({"epoch": i + 1, "images_per_s": s}) for i, s in enumerate(speeds)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_the_estimate_uses_the_median_recorded_speed_and_names_what_it_cannot_estimate(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "store")
    _run(store, "a", "resnet8", "cifar100", [100.0, 200.0])
    _run(store, "b", "resnet8", "cifar100", [300.0])
    _run(store, "c", "resnet8", "digits", [9999.0])  # other data: not this speed
    assert recorded_speed(store, "resnet8", "cifar100") == 200.0
    assert recorded_speed(store, "wrn_16_2", "cifar100") is None
    runs = [PlannedRun("resnet8", "cifar100", 240, 50_000)] * 3 + [
        PlannedRun("wrn_16_2", "cifar100", 240, 50_000)
    ]
    # 240 x 50,000 / 200 = 60,000 s per run, 3 runs = 180,000 s = 50 h; 2 jobs at once: 25 h
    assert estimate(store, runs, jobs=2) == (
        "about 50:00:00 of training for 3 run(s) at the speeds earlier runs measured (25:00:00 with --jobs 2); "
        "1 run(s) of wrn_16_2 on cifar100 not estimated (no earlier run measured them)"
    )

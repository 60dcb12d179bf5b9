"""One unit in every JSON output (docs/configuration.md#units): accuracies, confidences, ECE, rates
and relative increases are fractions in [0, 1]; text for people shows percent.

Each command runs for real on tiny data; besides the range, each fraction is pinned exactly (a
count over the test split, a mean re-derived from a file, the same number from two commands), so
a percentage anywhere fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ekdcli.method.scoring import load_scores

TOML = """
data = "fake"
teacher = "tiny_cnn"
student = "tiny_cnn"
recipe = "quick"
precision = "fp32"

[data_options]
n_train = 64
n_test = 32
"""
N_TEST = 32
FRACTIONS = {
    "top1", "top5", "best_top1", "best_top5", "last_top1", "last_top5", "train_top1", "test_top1",
    "test_top5", "accuracy", "teacher_accuracy", "mean_confidence", "ece", "selected_fraction", "rate",
    "low_rate", "high_rate",
}  # fmt: skip


def fractions(value: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """Every number under a key named like an accuracy, a confidence or a rate."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in FRACTIONS and isinstance(item, (int, float)) and not isinstance(item, bool):
                yield f"{path}.{key}", float(item)
            yield from fractions(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from fractions(item, f"{path}[{i}]")


def assert_fractions(payload: Any) -> int:
    found = list(fractions(payload))
    outside = [(where, v) for where, v in found if not 0.0 <= v <= 1.0]
    assert not outside, f"not fractions in [0, 1]: {outside}"
    return len(found)


def of_test_split(value: float) -> None:
    """A test-split accuracy: a whole number of the 32 test images, as a fraction."""
    assert 0.0 <= value <= 1.0 and value * N_TEST == pytest.approx(round(value * N_TEST))


def run(ekd: Any, *args: str) -> dict[str, Any]:
    code, out, err = ekd(*args, "--json")
    assert code == 0, (args, err)
    return json.loads(out)


@pytest.mark.slow
def test_every_json_output_gives_fractions(tmp_path: Path, ekd: Any) -> None:
    (tmp_path / "ekd.toml").write_text(TOML)
    trained = run(ekd, "train", "--model", "tiny_cnn", "--epochs", "2")
    assert assert_fractions(trained) >= 2
    of_test_split(trained["best_top1"])
    run_dir = Path(trained["run_dir"])
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert assert_fractions(metrics) >= 4 and assert_fractions(summary) >= 4
    assert max(r["test_top1"] for r in metrics) == trained["best_top1"] == summary["best_top1"]

    scored = run(ekd, "score")
    assert assert_fractions(scored) >= 6
    table = load_scores(scored["scores"])
    assert scored["summary"]["accuracy"] == pytest.approx(
        float((table.predictions == table.labels).double().mean())
    )
    assert scored["summary"]["mean_confidence"] == pytest.approx(float(table.confidence.double().mean()))

    distilled = run(ekd, "distill", "--method", "energy_kd", "--epochs", "1")
    assert assert_fractions(distilled) >= 6
    for key in ("best_top1", "last_top1", "best_top5", "last_top5"):
        of_test_split(distilled[key])

    evaluated = run(ekd, "evaluate", distilled["run_dir"], "--which", "last", "--groups")
    assert assert_fractions(evaluated) >= 8
    (target,) = evaluated["targets"]
    assert target["top1"] == pytest.approx(distilled["last_top1"])  # the same weights on the same split
    of_test_split(target["top5"])
    groups = target["energy_groups"]["groups"]
    teacher_right = (table.predictions == table.labels).double()
    seen = sum(groups[g]["teacher_accuracy"] * groups[g]["count"] for g in ("low", "others", "high"))
    assert seen == pytest.approx(float(teacher_right.sum()))  # counts x fractions = correct samples

    benched = run(ekd, "bench", "--method", "kd", "--augment", "he-cutmix", "--aug-rates", "0.2,1.0",
                  "--steps", "1", "--rounds", "1", "--out", str(tmp_path / "bench"))  # fmt: skip
    assert assert_fractions(benched) >= 1
    first, last = benched["rows"]
    assert last["increase"] == pytest.approx(last["seconds_per_step"] / first["seconds_per_step"] - 1.0)
    assert (first["paper_increase"], last["paper_increase"]) == (0.0394, 0.3326)

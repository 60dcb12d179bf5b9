"""The example's temperature rule with kd and dkd: per-sample T from the teacher's confidence."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from ekdcli.sdk.contracts import DistillBatch
from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.plugins import registry


def softmax(row: list[float]) -> list[float]:
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


def batch() -> DistillBatch:
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(6, 4, generator=g, dtype=torch.float64) * torch.linspace(0.2, 5, 6)[:, None]
    student = torch.randn(6, 4, generator=g, dtype=torch.float64)
    return DistillBatch(student, teacher, torch.randint(0, 4, (6,), generator=g), torch.arange(6), 30)


def expected_temperatures(teacher: torch.Tensor, t_min: float, t_max: float) -> list[float]:
    return [t_min + (t_max - t_min) * max(softmax(row)) for row in teacher.tolist()]


def kd_reference(student: torch.Tensor, teacher: torch.Tensor, temps: list[float]) -> float:
    total = 0.0
    for s, t, temp in zip(student.tolist(), teacher.tolist(), temps, strict=True):
        p, q = softmax([v / temp for v in t]), softmax([v / temp for v in s])
        total += temp**2 * sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))
    return total / len(temps)


def test_the_rule_is_registered_and_gives_its_formula() -> None:
    component = registry("temperature_rules").get("confidence")
    assert component.plugin == "ekd-example"
    rule = component.build(t_min=1.0, t_max=9.0)
    b = batch()
    stats: dict = {}
    temps = rule(b.teacher_logits, b.indices, stats)
    assert temps.tolist() == pytest.approx(expected_temperatures(b.teacher_logits, 1.0, 9.0), rel=1e-6)
    assert float(stats["confidence_t_sum"]) == pytest.approx(float(temps.sum()))
    with pytest.raises(UsageError, match="'t_min' of temperature rule 'confidence' must not exceed 't_max'"):
        component.build(t_min=7.0)


def test_kd_and_dkd_distil_at_the_rules_temperatures() -> None:
    distillers = registry("distillers")
    rule = registry("temperature_rules").get("confidence").build()
    b = batch()
    temps = expected_temperatures(b.teacher_logits, 2.0, 6.0)
    kd = distillers.get("kd").build(temperature_rule=rule)(b)
    assert kd["kd"].item() == pytest.approx(
        0.9 * kd_reference(b.student_logits, b.teacher_logits, temps), rel=1e-6
    )
    dkd = distillers.get("dkd").build(temperature_rule=rule, warmup=0)
    out = dkd(b)
    assert dkd.describe()["temperature_rule"] == "confidence"
    # with the rule's per-sample T, DKD's two terms differ from those at the fixed T = 4
    fixed = distillers.get("dkd").build(warmup=0)(batch())
    assert not torch.allclose(out["nckd"], fixed["nckd"])
    assert torch.isfinite(torch.stack(list(out.values()))).all()


@pytest.mark.parametrize("method", ["kd", "dkd"])
def test_ekd_distill_runs_kd_and_dkd_with_the_rule(tmp_path: Path, method: str) -> None:
    from ekdcli.cli.main import main

    config = tmp_path / "ekd.toml"
    config.write_text(
        f'store = "{tmp_path / "store"}"\ndata = "fake"\nteacher = "tiny_cnn"\nstudent = "tiny_cnn"\n'
        "[data_options]\nn_train = 64\nn_test = 16\nnum_classes = 4\n"
    )

    def ekd(*args: str) -> None:
        try:
            main(list(args))
        except SystemExit as exc:
            assert exc.code in (0, None)

    ekd("train", "--config", str(config), "--model", "tiny_cnn", "--epochs", "1", "--quiet")
    ekd(
        "distill", "--config", str(config), "--method", method, "--temperature-rule", "confidence",
        "--set", "temperature.t_max=8", "--epochs", "1", "--quiet", "--json",
    )  # fmt: skip
    (run,) = (tmp_path / "store" / "runs").glob(f"distill-{method}-*")
    described = json.loads((run / "summary.json").read_text())["objective"]["distiller"]
    assert (described["temperature_rule"], described["t_min"], described["t_max"]) == ("confidence", 2.0, 8.0)
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert 2.0 * 64 <= record["stats"]["confidence_t_sum"] <= 8.0 * 64

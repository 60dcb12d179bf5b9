"""examples/compose: the {KD, DKD, MLKD, CTKD} x {fixed, energy paper, energy official} table resolves,
plans and builds exactly as ``ekd distill`` would, with each method's published settings."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ekdcli.config import resolve
from ekdcli.jobs.common import resolve_recipe
from ekdcli.jobs.plan import build_losses, plan_methods
from ekdcli.sdk.plugins import registry

COMPOSE = Path(__file__).resolve().parents[2] / "examples" / "compose"
CONFIGS = sorted(COMPOSE.glob("*.toml"))
PAIRS = {("resnet32x4", "resnet8x4"), ("vgg13", "vgg8")}
# (rule, [temperature] preset) of each row name
RULES = {
    "fixed": ("fixed", None),
    "energy_paper": ("energy", "paper"),
    "energy_official": ("energy", "official"),
}
# the rule's temperatures: low / mid / high energy
TEMPERATURES = {
    "paper": {"low": 6.0, "mid": 4.0, "high": 2.0},
    "official": {"low": 2.0, "mid": 4.0, "high": 6.0},
}


def test_the_table_is_complete() -> None:
    rows = {tuple(p.stem.split("-")) for p in CONFIGS}
    assert rows == {(m, r, t, s) for m in ("kd", "dkd", "mlkd", "ctkd") for r in RULES for t, s in PAIRS}
    assert len(CONFIGS) == 24


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_resolves_plans_and_builds(path: Path) -> None:
    method, row, teacher, student = path.stem.split("-")
    config = resolve(config_file=path)
    assert (config.method, config.teacher, config.student, config.data) == (
        method,
        teacher,
        student,
        "cifar100",
    )
    for name in (teacher, student):
        assert registry("models").get(name).name == name
    plan = plan_methods(config)
    rule, preset = RULES[row]
    assert plan.rule is not None and plan.rule.name == rule and not plan.notes
    distiller, augmentation = build_losses(config, plan, (teacher, student), num_classes=100)
    assert augmentation is None
    described = distiller.describe()
    assert (described["method"], described["temperature_rule"]) == (method, rule)
    if preset is None:
        assert described["t"] == 4.0 and not distiller.needs_energy
    else:
        assert distiller.needs_energy and described["preset"] == preset
        assert described["temperatures"] == TEMPERATURES[preset]
        assert (described["low_rate"], described["high_rate"]) == (0.2, 0.2)
    recipe = resolve_recipe(config, SimpleNamespace(name="cifar100", info={})).validate()
    lr = 0.025 if method == "mlkd" else 0.05  # MLKD's configs halve mdistiller's rate
    assert (recipe.epochs, recipe.batch_size, recipe.lr, recipe.weight_decay) == (240, 64, lr, 5e-4)
    assert recipe.milestones == (150, 180, 210)
    _check_method(method, described, (teacher, student))
    text = path.read_text(encoding="utf-8")
    assert f"ekd distill --config examples/compose/{path.name} " in text
    assert ("Published top-1: 7" in text) == (row == "fixed")


def _check_method(method: str, described: dict[str, Any], pair: tuple[str, str]) -> None:
    if method in ("kd", "mlkd", "ctkd"):
        assert (described["w_ce"], described["w_kd"]) == (0.1, 0.9)
    if method == "dkd":
        beta = 8.0 if pair == ("resnet32x4", "resnet8x4") else 6.0  # mdistiller's dkd configs
        assert (described["alpha"], described["beta"], described["warmup"], described["w_ce"]) == (
            1.0,
            beta,
            20.0,
            1.0,
        )
    if method == "mlkd":
        assert described["ladder"] == [1.0, 0.75, 1.25, 0.5, 1.5]
    if method == "ctkd":
        want = {"variant": "global", "t_start": 1.0, "t_range": 20.0, "lambda_min": 0.0, "lambda_max": 1.0}
        assert {k: described[k] for k in want} == want and described["lambda_epochs"] == 10


def test_readme_cites_the_published_numbers() -> None:
    readme = (COMPOSE / "README.md").read_text(encoding="utf-8")
    for number in ("73.33", "72.98", "76.32", "74.68", "77.08", "75.18", "73.39", "73.52"):
        assert number in readme
        assert any(number in p.read_text(encoding="utf-8") for p in CONFIGS), number


def test_committed_files_equal_the_generator_output(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("ekd_compose_generate", COMPOSE / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.main(["--out", str(tmp_path)]) == 0
    fresh = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.toml")}
    committed = {p.name: p.read_text(encoding="utf-8") for p in CONFIGS}
    assert fresh == committed, "re-run python examples/compose/generate.py"

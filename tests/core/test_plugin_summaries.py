"""The core reads typed plugin summaries, never a plugin's free-form ``describe()`` keys."""

from __future__ import annotations

import ast
from pathlib import Path

import torch
from ekd_plugins.augmentations.energy_mix import he_cutmix
from ekd_plugins.distillers.energy_kd import make_energy_kd
from ekd_plugins.distillers.logit import make_dkd, make_kd

from ekdcli.sdk.contracts import EnergyContext

CORE = Path(__file__).resolve().parents[2] / "ekdcli"
# The core's own Runtime.describe() (device facts), not a plugin's.
OWN = {("engine/loop.py", "rt"), ("jobs/bench_engine.py", "default")}


def _is_describe_call(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "describe"
    )


def _receiver(call: ast.Call) -> str:
    assert isinstance(call.func, ast.Attribute)
    return ast.unparse(call.func.value)


def _reads(tree: ast.AST, rel: str) -> list[str]:
    """``x.describe()[k]``, ``x.describe().get(k)``, and the same through a name bound to ``x.describe()``."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_describe_call(node.value):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    bound[target.id] = _receiver(node.value)  # type: ignore[arg-type]
    found = []
    for node in ast.walk(tree):
        value = None
        if isinstance(node, ast.Subscript):
            value = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            value = node.func.value
        if value is None:
            continue
        receiver = None
        if _is_describe_call(value):
            receiver = _receiver(value)  # type: ignore[arg-type]
        elif isinstance(value, ast.Name) and value.id in bound:
            receiver = bound[value.id]
        if receiver is not None and (rel, receiver) not in OWN:
            found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_core_module_reads_a_plugins_describe_keys() -> None:
    reads = []
    for path in sorted(CORE.rglob("*.py")):
        rel = path.relative_to(CORE).as_posix()
        reads += _reads(ast.parse(path.read_text(encoding="utf-8")), rel)
    assert reads == [], "read the typed summary() (ekdcli/sdk/contracts.py) instead:\n" + "\n".join(reads)


def test_the_check_finds_such_reads() -> None:
    code = "def f(d):\n    a = d.describe()['x']\n    b = d.describe().get('y')\n    s = d.describe()\n    return s['z']\n"
    assert len(_reads(ast.parse(code), "x.py")) == 3


def test_summaries_carry_temperatures_rates_sources_and_groups() -> None:
    kd = make_kd(t=3)
    assert kd.summary().text == "kd, T 3" and kd.summary().rule.temperatures == {"all": 3.0}
    assert kd.needs_energy is False and kd.summary().rule.energy_source is None
    assert make_dkd(beta=2).summary().text == "dkd (alpha 1, beta 2), T 4"
    energy = make_energy_kd(preset="official", low_rate=0.1, high_rate=0.3)
    before = energy.summary().rule
    assert before.temperatures == {"low": 2.0, "mid": 4.0, "high": 6.0}
    assert (before.energy_source, before.rates, before.rate_source, before.groups) == (
        "online",
        (0.1, 0.3),
        "default",
        None,
    )
    assert energy.needs_energy is True
    energies = torch.arange(10, dtype=torch.float32)  # 1 low (E < E_low, released rule), 3 high
    energy.setup(EnergyContext(energies, 4.0, "f"), 1)
    groups = energy.summary().rule.groups
    assert groups is not None and groups.sizes == {"low": 1, "mid": 6, "high": 3}
    assert set(groups.thresholds) >= {"low", "high"}
    aug = he_cutmix(rate=0.3, source="online")
    summary = aug.summary()
    assert (summary.selection, summary.energy_source, summary.rate, summary.groups) == (
        "high",
        "online",
        0.3,
        None,
    )
    assert summary.text == "he-cutmix: cutmix of the 30% highest-energy images (extra mode)"
    aug.setup(EnergyContext(energies, 4.0, "f"))
    assert aug.summary().groups is not None and aug.summary().groups.thresholds is not None

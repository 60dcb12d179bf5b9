"""Temperature rules as a component kind: fixed / energy / gradation, energy_kd == kd + energy rule
bit for bit, the routing of --temperature-rule, [temperature] and the energy flags, ``ekd list``,
and every temperature-based method running with the energy rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import distill_reference as ref
import pytest
import torch
from ekd_plugins.distillers.energy_kd import make_energy_dkd, make_energy_kd
from ekd_plugins.distillers.logit import make_dkd, make_kd
from test_distill_cli import fake_ws  # noqa: F401 - the fixture

from ekdcli.config import read_toml, resolve
from ekdcli.jobs.plan import build_losses, plan_methods
from ekdcli.sdk.contracts import DistillBatch, EnergyContext
from ekdcli.sdk.energy import energy
from ekdcli.sdk.plugins import registry
from ekdcli.util.errors import UsageError

N, K = 128, 10


@pytest.fixture(scope="module")
def data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    scale = torch.linspace(0.3, 6.0, N)[torch.randperm(N, generator=g)]
    teacher = torch.randn(N, K, generator=g) * scale[:, None]
    return {
        "teacher": teacher,
        "student": torch.randn(N, K, generator=g) * 2,
        "labels": torch.randint(0, K, (N,), generator=g),
        "energies": energy(teacher, 4.0),
    }


def rule(name: str, **options: Any):  # noqa: ANN201
    return registry("temperature_rules").get(name).build(**options)


def losses_and_grad(distiller, data, dtype: torch.dtype, seed: int):  # noqa: ANN001, ANN201
    distiller.setup(EnergyContext(data["energies"], 4.0, "x") if distiller.needs_energy else None, 10)
    idx = torch.randperm(N, generator=torch.Generator().manual_seed(seed))[:48]
    student = data["student"][idx].to(dtype).requires_grad_(True)
    batch = DistillBatch(student, (data["teacher"][idx] * 1.01).to(dtype), data["labels"][idx], idx, 7)
    out = distiller(batch)
    torch.stack([v.float() for v in out.values()]).sum().backward()
    return {k: v.detach() for k, v in out.items()}, student.grad, batch.stats


RULE_OPTIONS = [
    {},
    {"preset": "official"},
    {"preset": "official", "source": "static", "rate": 0.3},
    {"segments": 10},
    {"preset": "official", "segments": 5, "source": "static"},
    {"apply": "low", "t": 3.0},
    {"apply": "high", "t_low_energy": 1.5, "t_mid": 3.0, "t_high_energy": 7.0, "source": "online"},
]


@pytest.mark.parametrize("options", RULE_OPTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_energy_kd_and_dkd_are_kd_and_dkd_with_the_energy_rule_bit_for_bit(data, options, dtype) -> None:
    pairs = [
        (make_energy_kd(**options), make_kd(temperature_rule=rule("energy", **options))),
        (
            make_energy_dkd(pair=("resnet56", "resnet20"), **options),
            # the core hands the pair to both (DKD's beta, the released rate of this pair)
            make_dkd(
                pair=("resnet56", "resnet20"),
                temperature_rule=rule("energy", pair=("resnet56", "resnet20"), **options),
            ),
        ),
    ]
    for seed, (alias, composed) in enumerate(pairs):
        a_losses, a_grad, a_stats = losses_and_grad(alias, data, dtype, seed)
        b_losses, b_grad, b_stats = losses_and_grad(composed, data, dtype, seed)
        assert a_losses.keys() == b_losses.keys()
        for name in a_losses:
            assert torch.equal(a_losses[name], b_losses[name]), name
        assert torch.equal(a_grad, b_grad)
        assert a_stats == b_stats and sum(a_stats.values()) == 48
        described = {k: v for k, v in alias.describe().items() if k != "method"}
        assert described == {k: v for k, v in composed.describe().items() if k != "method"}


def test_fixed_rule_keeps_kd_on_its_scalar_path(data) -> None:
    fixed = rule("fixed", t=3.0)
    assert fixed(data["teacher"][:4], torch.arange(4), {}) == 3.0 and fixed.reference == 3.0
    out, _, stats = losses_and_grad(make_kd(t=3.0), data, torch.float32, 0)
    idx = torch.randperm(N, generator=torch.Generator().manual_seed(0))[:48]
    assert out["kd"].item() == pytest.approx(
        0.9 * ref.kd(data["student"][idx], data["teacher"][idx] * 1.01, 3.0)
    )
    assert stats == {}  # a fixed temperature counts nothing


def test_gradation_is_the_energy_rule_in_segments(data) -> None:
    context = EnergyContext(data["energies"], 4.0, "x")
    grad, seg = rule("gradation"), rule("energy", segments=10)
    grad.setup(context)
    seg.setup(context)
    idx = torch.arange(N)
    assert torch.equal(grad(data["teacher"], idx, {}), seg(data["teacher"], idx, {}))
    desc = grad.describe()
    assert grad.name == "gradation" and desc["segments"] == 10 and desc["mode"] == "gradation"
    assert grad.reference == 4.0 and rule("energy", preset="official").reference == 4.0
    with pytest.raises(UsageError, match="temperature rule 'gradation' has no option 'apply'"):
        rule("gradation", apply="low")


def test_a_rule_option_beside_a_given_rule_is_refused() -> None:
    with pytest.raises(UsageError, match=r"distiller 'kd' got 't' beside its temperature rule 'energy'"):
        make_kd(t=3.0, temperature_rule=rule("energy"))


# ------------------------------------------------------------------ routing in ekd distill
def plan(flags: dict[str, Any], text: str | None = None, tmp: Path | None = None):  # noqa: ANN201
    config_file = None
    if text is not None and tmp is not None:
        config_file = tmp / "ekd.toml"
        config_file.write_text(text)
    config = resolve(flags, config_file)
    return config, plan_methods(config)


def test_temperature_rule_flag_and_energy_flags_reach_the_rule() -> None:
    config, p = plan(
        {"method": "mlkd", "temperature_rule": "energy", "energy": {"preset": "official"}, "rate": 0.3}
    )
    assert p.rule is not None and p.rule.name == "energy"
    assert p.rule_options == {
        "preset": "official",
        "energy_temperature": 4.0,
        "low_rate": 0.3,
        "high_rate": 0.3,
    }
    assert p.distiller_options == {}
    distiller, _ = build_losses(config, p, ("resnet56", "resnet20"))
    assert distiller.rule.describe()["low_rate"] == 0.3 and distiller.needs_energy


def test_kd_t_in_distiller_table_goes_to_the_rule_and_temperature_table_wins(tmp_path: Path) -> None:
    config, p = plan({"method": "kd"}, "method = 'kd'\n[distiller]\nt = 3.0\nw_kd = 0.5\n", tmp_path)
    assert (p.rule.name, p.rule_options, p.distiller_options) == ("fixed", {"t": 3.0}, {"w_kd": 0.5})
    distiller, _ = build_losses(config, p, ("a", "b"))
    assert distiller.rule.t == 3.0 and distiller.w_kd == 0.5
    _, p = plan({"method": "kd", "set_values": None, "temperature": {"t": 2.0}, "distiller": {"t": 3.0}})
    assert p.rule_options == {"t": 2.0}


def test_a_default_rules_option_under_another_rule_is_a_note_from_a_file_and_an_error_from_a_flag(
    tmp_path: Path,
) -> None:
    _, p = plan({"temperature_rule": "gradation"}, "method = 'kd'\n[distiller]\nt = 4.0\n", tmp_path)
    assert p.notes == [
        f"note: [distiller] t (of the fixed rule) in {tmp_path / 'ekd.toml'} does not apply to method 'kd'; ignored."
    ]
    assert "t" not in p.rule_options and "t" not in p.distiller_options
    with pytest.raises(UsageError, match="belongs to the 'fixed' temperature rule, not to 'gradation'"):
        plan({"method": "kd", "temperature_rule": "gradation", "distiller": {"t": 4.0}})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"method": "ce", "temperature_rule": "energy"}, "method 'ce' does not use a temperature"),
        ({"method": "ce", "temperature": {"t": 2}}, "method 'ce' does not use a temperature rule"),
        (
            {"method": "kd", "temperature_rule": "enrgy"},
            "unknown temperature rule 'enrgy'. Did you mean 'energy'",
        ),
        ({"method": "kd", "rate": 0.2}, "--temperature-rule energy"),
        ({"method": "dkd", "low_rate": 0.2}, "applies to the energy temperature rule only"),
        ({"method": "kd", "energy": {"preset": "official"}}, "temperature rule 'fixed' does not use them"),
        ({"method": "mlkd", "augment": "he-cutmix"}, "augments each batch itself"),
    ],
)
def test_misplaced_temperature_options_are_refused(flags: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        plan(flags)


# ------------------------------------------------------------------ the command line
def test_ekd_list_temperature_rules_with_either_spelling(ekd: Any) -> None:
    code, out, _ = ekd("list", "temperature-rules")
    assert code == 0
    for name in ("fixed", "energy", "gradation"):
        assert name in out
    assert "options: t=4.0" in out and "segments=10" in out
    code, same, _ = ekd("list", "temperature_rules")
    assert code == 0 and same == out
    code, out, _ = ekd("list", "temperature-rule", "energy", "--json")
    (entry,) = json.loads(out)
    assert entry["info"]["needs_energy"] is True and entry["info"]["options"]["preset"] == "paper"
    code, out, _ = ekd("list", "distillers", "mlkd")
    assert "temperature rule: fixed" in out


@pytest.mark.slow
@pytest.mark.parametrize("method", ["kd", "dkd", "mlkd", "ctkd"])
def test_each_method_runs_with_the_energy_rule_and_records_it(fake_ws: Path, ekd: Any, method: str) -> None:  # noqa: F811
    code, out, err = ekd(
        "distill", "--method", method, "--temperature-rule", "energy", "--preset", "official",
        "--epochs", "1", "--json", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert (result["method"], result["temperature_rule"]) == (method, "energy")
    run = Path(result["run_dir"])
    described = json.loads((run / "summary.json").read_text())["objective"]["distiller"]
    assert (described["method"], described["temperature_rule"]) == (method, "energy")
    assert (described["preset"], described["source"], described["temperatures"]) == (
        "official",
        "online",
        {"low": 2.0, "mid": 4.0, "high": 6.0},
    )
    recorded = read_toml(run / "config.toml")
    assert recorded["temperature_rule"] == "energy" and recorded["energy"]["preset"] == "official"
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert sum(v for k, v in record["stats"].items() if k.startswith("n_T")) > 0


def test_the_default_rules_option_beside_another_rule_is_refused_too() -> None:
    # t is the fixed rule's; with gradation it would be ignored, so it is an error
    with pytest.raises(UsageError, match=r"distiller 'dkd' got 't' beside its temperature rule 'gradation'"):
        make_dkd(t=3.0, temperature_rule=rule("gradation"))

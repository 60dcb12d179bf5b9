"""Registration, per-pair betas and the validation messages of the distiller factories."""

from __future__ import annotations

import importlib
import subprocess
import sys
from typing import Any

import ekd_plugins.distillers as plugin
import pytest
import torch
from ekd_plugins.distillers.energy_kd import make_energy_dkd, make_energy_kd
from ekd_plugins.distillers.logit import make_dkd, make_kd

from ekdcli.sdk.contracts import EnergyContext
from ekdcli.sdk.registry import Component
from ekdcli.util.errors import UsageError


def registered() -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}

    def register(name: str, factory: Any, *, aliases=(), description: str = "", info=None) -> None:
        # the registry's view of the row: an option record in info["options"] becomes its defaults
        derived = Component(
            "distillers", name, factory, "ekd", tuple(aliases), description, dict(info or {})
        ).info
        rows[name] = {
            "factory": factory,
            "aliases": tuple(aliases),
            "description": description,
            "info": derived,
        }

    plugin.register_distillers(register)
    return rows


def test_registration_names_aliases_and_info() -> None:
    # The logit methods; the feature methods' rows are checked by their own tests.
    rows = {name: row for name, row in registered().items() if row["info"].get("kind") != "feature"}
    assert set(rows) == {"ce", "kd", "dkd", "mlkd", "ctkd", "energy_kd", "energy_dkd"}
    assert rows["energy_kd"]["aliases"] == ("energy-kd", "ekd")
    assert rows["energy_dkd"]["aliases"] == ("energy-dkd",)
    for name, row in rows.items():
        module, _, attr = row["factory"].partition(":")
        distiller = getattr(importlib.import_module(module), attr)()
        assert distiller.name == name
        assert row["info"]["needs_teacher"] is distiller.needs_teacher
        assert row["info"]["needs_energy"] is distiller.needs_energy
        assert row["description"]
    assert rows["ce"]["info"]["needs_teacher"] is False
    assert rows["energy_dkd"]["info"]["needs_energy"] is True
    assert rows["kd"]["info"]["options"] == {"t": 4.0, "w_ce": 0.1, "w_kd": 0.9, "logit_standardize": False}
    assert rows["dkd"]["info"]["options"]["warmup"] == 20.0
    assert rows["energy_kd"]["info"]["options"]["preset"] == "paper"
    # the rule each temperature-based method uses unless --temperature-rule names another
    rules = {name: row["info"].get("temperature_rule") for name, row in rows.items()}
    assert rules == {
        "ce": None,
        "kd": "fixed",
        "dkd": "fixed",
        "mlkd": "fixed",
        "ctkd": "fixed",
        "energy_kd": "energy",
        "energy_dkd": "energy",
    }


def test_plugin_module_does_not_import_torch() -> None:
    code = "import sys, ekd_plugins.distillers; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("pair", "beta"),
    [
        (("resnet56", "resnet20"), 2.0),
        (("resnet110", "resnet32"), 2.0),
        (("resnet32x4", "resnet8x4"), 8.0),
        (("wrn40_2", "wrn16_2"), 6.0),  # aliases of wrn_40_2 / wrn_16_2
        ("wrn_40_2,wrn_40_1", 6.0),
        (("vgg13", "vgg8"), 6.0),
        (("vgg13", "mobilenetv2"), 6.0),
        (("resnet32x4", "shufflev2"), 8.0),
        (("imagenet/resnet34", "imagenet/resnet18"), 0.5),
        (("resnet20", "resnet8"), 8.0),  # unknown pair: mdistiller's default
    ],
)
def test_dkd_beta_from_pair(pair: Any, beta: float) -> None:
    assert make_dkd(pair=pair).beta == beta
    assert make_energy_dkd(pair=pair).beta == beta


def test_explicit_beta_wins_over_pair() -> None:
    d = make_dkd(pair=("resnet56", "resnet20"), beta=5.0)
    assert d.beta == 5.0 and d.describe()["beta_source"] == "given"
    assert (
        make_dkd(pair=("resnet56", "resnet20")).describe()["beta_source"]
        == "DKD config of resnet56->resnet20"
    )


def test_dkd_betas_table_is_plain_data() -> None:
    assert plugin.DKD_BETAS[("resnet56", "resnet20")] == 2.0
    assert plugin.DKD_BETAS[("wrn_40_2", "wrn_16_2")] == 6.0


def test_string_values_are_coerced() -> None:
    d = make_kd(t="5", w_ce="0.2", logit_standardize="yes")
    assert (d.rule.t, d.w_ce, d.logit_standardize) == (5.0, 0.2, True)
    assert make_energy_kd(segments="10").rule.segments == 10
    assert make_kd(t=None).rule.t == 4.0  # None = not given


def message(excinfo: pytest.ExceptionInfo[UsageError]) -> str:
    return str(excinfo.value)


def test_unknown_options_are_listed_with_valid_ones() -> None:
    with pytest.raises(UsageError) as e:
        make_kd(temperature=3, w_ce=0.1)
    text = message(e)
    assert "'temperature'" in text and "'kd'" in text
    assert "valid options are t, w_ce, w_kd, logit_standardize." in text
    with pytest.raises(UsageError, match=r"'presett'.*Did you mean 'preset'"):
        make_energy_kd(presett="paper")
    with pytest.raises(UsageError, match=r"'a', 'b'"):
        make_dkd(a=1, b=2)


@pytest.mark.parametrize(
    ("factory", "options", "pattern"),
    [
        (make_kd, {"t": 0}, r"'t' of temperature rule 'fixed' must be greater than 0, got 0"),
        (make_kd, {"t": "hot"}, r"'t' of temperature rule 'fixed' must be a number, got 'hot'"),
        (make_kd, {"w_kd": -1}, r"'w_kd' of distiller 'kd' must be 0 or more"),
        (make_kd, {"logit_standardize": "maybe"}, r"must be true or false"),
        (make_dkd, {"warmup": -5}, r"'warmup' of distiller 'dkd' must be 0 or more"),
        (make_dkd, {"pair": ("resnet56",)}, r"'pair' of distiller 'dkd' must name a teacher and a student"),
        (
            make_energy_kd,
            {"preset": "offical"},
            r"'preset' of temperature rule 'energy' must be one of paper, official",
        ),
        (make_energy_kd, {"source": "dynamic"}, r"'source' .* must be one of static, online"),
        (make_energy_kd, {"apply": "middle"}, r"'apply' .* must be one of both, low, high"),
        (make_energy_kd, {"low_rule": "strict"}, r"'low_rule' .* must be one of paper, released"),
        (
            make_energy_kd,
            {"rate": 1.0},
            r"'rate' of temperature rule 'energy' must be in \(0, 0.5\], got 1.0",
        ),
        (make_energy_kd, {"low_rate": 0}, r"'low_rate' .* must be in \(0, 1\), got 0"),
        (make_energy_kd, {"low_rate": 0.6, "high_rate": 0.5}, r"low_rate \+ high_rate .* at most 1"),
        (make_energy_kd, {"t_low_energy": -2}, r"'t_low_energy' .* greater than 0"),
        (make_energy_kd, {"t": 2, "t_minus": -2}, r"high-energy temperature .* would be t \+ t_minus = 0"),
        (make_energy_kd, {"t_plus": 1, "t_low_energy": 5}, r"either 't_plus' or 't_low_energy'"),
        (make_energy_kd, {"t": 4, "t_mid": 5}, r"'t' and 't_mid' .* give only one"),
        (make_energy_kd, {"segments": 1}, r"'segments' .* at least 2, got 1"),
        (make_energy_kd, {"segments": 2.5}, r"'segments' .* must be an integer, got 2.5"),
        (make_energy_kd, {"segments": 10, "apply": "low"}, r"'apply' .* cannot be combined with 'segments'"),
        (make_energy_kd, {"t_min": 7}, r"'t_min' .* must not exceed 't_max'"),
        (make_energy_dkd, {"energy_temperature": 0}, r"'energy_temperature' .* greater than 0"),
    ],
)
def test_bad_values_are_refused_with_one_sentence(
    factory: Any, options: dict[str, Any], pattern: str
) -> None:
    with pytest.raises(UsageError, match=pattern) as e:
        factory(**options)
    assert e.value.exit_code == 2


def test_setup_refuses_missing_or_mismatched_scores() -> None:
    d = make_energy_kd()
    with pytest.raises(UsageError, match="run `ekd score`"):
        d.setup(None, 10)
    ctx = EnergyContext(energies=torch.randn(20), energy_temperature=2.0, fingerprint="x")
    with pytest.raises(
        UsageError,
        match=r"energy temperature 2 but temperature rule 'energy' asks for 4; set energy_temperature",
    ):
        d.setup(ctx, 10)
    d = make_energy_kd(energy_temperature=2.0)
    d.setup(ctx, 10)
    assert d.describe()["energy_temperature"] == 2.0


def test_temperatures_before_setup_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="setup"):
        make_energy_kd().rule.temperatures(torch.arange(3), None)

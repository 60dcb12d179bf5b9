"""Help texts true to the code: recipe defaults, the seed's range, list's kinds, MLflow's files."""

from __future__ import annotations

import re

from click.testing import CliRunner

from ekdcli.cli.main import cli


def _help(*args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_recipe_defaults_in_the_help_are_the_recipes() -> None:
    from ekdcli.cli.options import RECIPE_EPOCHS, RECIPE_LRS
    from ekdcli.engine.recipe import RECIPES

    shown = {name: int(epochs) for epochs, name in re.findall(r"(\d+) ([\w-]+)", RECIPE_EPOCHS)}
    assert shown == {name: recipe.epochs for name, recipe in RECIPES.items()}
    for name, recipe in RECIPES.items():
        assert re.search(rf"{recipe.lr:g}[^(]*\b{name}\b", RECIPE_LRS), name
    text = _help("train")
    assert f"default: the recipe's, {RECIPE_EPOCHS}" in text and "default: the recipe's, 0.05 cifar" in text


def test_the_seed_range_is_readable_and_method_and_preset_defaults_are_shown() -> None:
    text = _help("distill")
    assert "0<=x<2**63" in text and "9223372036854775807" not in text
    assert "(default energy_kd)" in text and "(default paper)" in text


def test_ekd_list_help_names_every_kind() -> None:
    from ekdcli.sdk.registry import KINDS

    text = _help("list")
    for kind in KINDS:
        assert kind.replace("_", "-") in text, kind


def test_the_mlflow_tracker_says_where_it_writes() -> None:
    from ekd_plugins.trackers import mlflow_tracker

    from ekdcli.sdk.plugins import registry

    described = registry("trackers").get("mlflow").description
    assert f"<store>/{mlflow_tracker.DATABASE}" in described and "mlartifacts" in described
    assert "mlruns" not in described


def test_evaluate_names_its_energy_groups_flag_both_ways() -> None:
    text = _help("evaluate")
    assert "--groups, --energy-groups" in text

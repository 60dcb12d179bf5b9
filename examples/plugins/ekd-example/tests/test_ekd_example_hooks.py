"""The hooks of ekd_example: what they register, that it resolves, and a torch-free import."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from typing import Any

import ekd_example
import pytest
from click.testing import CliRunner
from ekd_example.command import class_counts, parse_options

from ekdcli.sdk.errors import UsageError


def collect() -> dict[str, dict[str, Any]]:
    """Call every hook of the plugin with a fake ``register`` that records its arguments."""
    seen: dict[str, dict[str, Any]] = {}

    def recorder(kind: str):  # type: ignore[no-untyped-def]
        def register(
            name: str,
            factory: Any,
            *,
            aliases: tuple[str, ...] = (),
            description: str = "",
            info: dict[str, Any] | None = None,
        ) -> None:
            assert name not in seen, name
            seen[name] = {"kind": kind, "factory": factory, "aliases": aliases, "description": description}

        return register

    ekd_example.register_models(recorder("models"))
    ekd_example.register_datasets(recorder("datasets"))
    ekd_example.register_temperature_rules(recorder("temperature_rules"))
    ekd_example.register_commands(recorder("commands"))
    return seen


def test_hooks_register_lazy_factories_that_resolve() -> None:
    seen = collect()
    assert {name: entry["kind"] for name, entry in seen.items()} == {
        "convmixer_tiny": "models",
        "digits-lt": "datasets",
        "listfile-lt": "datasets",
        "confidence": "temperature_rules",
        "class-counts": "commands",
    }
    for entry in seen.values():
        module, _, attr = entry["factory"].partition(":")
        assert callable(getattr(importlib.import_module(module), attr)) and entry["description"]


def test_importing_the_plugin_does_not_import_torch() -> None:
    code = "import sys, ekd_example; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_class_counts_command_reports_the_long_tail() -> None:
    result = CliRunner().invoke(class_counts, ["--data", "digits-lt", "-o", "imbalance_factor=0.5", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    train = [row["train"] for row in report["classes"]]
    assert report["dataset"] == "digits-lt" and train[0] / train[-1] == pytest.approx(2.0, abs=0.02)
    assert report["imbalance_ratio"] == max(train) / min(train) and report["train"] == sum(train)


def test_option_pairs_are_parsed_and_checked() -> None:
    assert parse_options(("a=1", " b = x=y ")) == {"a": "1", "b": "x=y"}
    with pytest.raises(UsageError, match="--option takes KEY=VALUE"):
        parse_options(("imbalance_factor",))

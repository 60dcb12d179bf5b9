"""The dataset plugin's hook: names, lazy factories, and a torch-free import."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

from ekd_plugins.datasets import register_datasets


def _collect() -> dict[str, dict]:
    seen: dict[str, dict] = {}

    def register(name, factory, *, aliases=(), description="", info=None):  # type: ignore[no-untyped-def]
        assert name not in seen, f"{name} registered twice"
        seen[name] = {"factory": factory, "aliases": tuple(aliases), "description": description, "info": info}

    register_datasets(register)
    return seen


def test_registers_the_documented_names() -> None:
    seen = _collect()
    assert set(seen) == {"cifar100", "cifar10", "cifar100-lt", "cifar10-lt", "digits", "fake", "imagenet"}
    assert {"default", "embedded"} <= set(seen["digits"]["aliases"])
    aliases = [a for entry in seen.values() for a in entry["aliases"]]
    assert len(aliases) == len(set(aliases)) and not set(aliases) & set(seen)
    assert seen["cifar100"]["info"]["classes"] == 100 and seen["imagenet"]["info"]["kind"] == "folder"


def test_factories_are_lazy_strings_that_resolve_to_callables_taking_root() -> None:
    for name, entry in _collect().items():
        assert isinstance(entry["factory"], str) and entry["description"], name
        module, attr = entry["factory"].split(":")
        factory = getattr(importlib.import_module(module), attr)
        params = inspect.signature(factory).parameters
        assert list(params)[0] == "root" and params["root"].default is None, name
        assert "download" in params, name


def test_importing_the_plugin_does_not_import_torch() -> None:
    code = "import sys, ekd_plugins.datasets; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]

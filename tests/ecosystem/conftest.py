"""Fixtures for the plugin-ecosystem tests: run the real ``ekd`` executable, fake installed plugins.

A fake plugin is what pip leaves behind: a module plus a ``<dist>-<version>.dist-info``
folder with ``METADATA`` and ``entry_points.txt``, in a folder the subprocess gets on
its ``PYTHONPATH``; ``importlib.metadata`` discovers its entry point like any other.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

EKD_SCRIPT = Path(sys.executable).with_name("ekd")


def _require_installed(*distributions: str) -> None:
    from importlib.metadata import PackageNotFoundError, distribution

    for name in distributions:
        try:
            distribution(name)
        except PackageNotFoundError:
            pytest.fail(
                f"{name} is not installed; run 'make install' (or "
                f"pip install -e examples/plugins/{name}) before the tests."
            )


@pytest.fixture(scope="session")
def examples_installed() -> None:
    """The example packages must be installed (the Makefile does it); a missing one fails loudly."""
    _require_installed("ekd-example", "ekd-timm", "ekd-wandb")


def _run_ekd(
    *args: str, extra_path: Path | None = None, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """``ekd ARGS`` in a subprocess (the console script pip installed), with optional extra sys.path."""
    environment = dict(os.environ)
    if extra_path is not None:
        environment["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(extra_path), environment.get("PYTHONPATH", "")) if p
        )
    environment.update(env or {})
    command = [str(EKD_SCRIPT)] if EKD_SCRIPT.exists() else [sys.executable, "-m", "ekdcli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout, env=environment)


def _ekd_json(*args: str, **kwargs: Any) -> Any:
    """The JSON document ``ekd ARGS --json`` prints; the command must succeed."""
    result = _run_ekd(*args, "--json", **kwargs)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def run_ekd() -> Callable[..., subprocess.CompletedProcess[str]]:
    return _run_ekd


@pytest.fixture
def ekd_json() -> Callable[..., Any]:
    return _ekd_json


@pytest.fixture
def fake_site(tmp_path: Path) -> Path:
    site = tmp_path / "fake-site"
    site.mkdir()
    return site


@pytest.fixture
def install_fake_plugin(fake_site: Path) -> Callable[[str, str, str], Path]:
    """``install(dist, module, source)``: plugin ``dist`` whose entry point (named ``dist``) is ``module``."""

    def install(dist: str, module: str, source: str) -> Path:
        assert importlib.util.find_spec(module) is None, f"{module} would shadow an installed module"
        info = fake_site / f"{dist.replace('-', '_')}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
        (info / "entry_points.txt").write_text(f"[ekd]\n{dist} = {module}\n")
        (fake_site / f"{module}.py").write_text(textwrap.dedent(source))
        return fake_site

    return install

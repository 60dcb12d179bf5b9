"""The example packages are found through their real entry points, and only while installed and enabled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("examples_installed")


def _timm_names() -> list[str]:
    from ekd_timm import MODELS

    return [f"timm/{row[0]}" for row in MODELS]


def _plugin(payload: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((p for p in payload["plugins"] if p["name"] == name), None)


def test_plugins_lists_both_packages_with_what_they_register(ekd_json: Callable[..., Any]) -> None:
    payload = ekd_json("plugins")
    example = _plugin(payload, "ekd-example")
    assert example is not None and payload["warnings"] == []
    assert (example["distribution"], example["version"], example["module"]) == (
        "ekd-example",
        "0.1.0",
        "ekd_example",
    )
    assert example["registers"] == {
        "models": ["convmixer_tiny"],
        "datasets": ["digits-lt", "listfile-lt"],
        "temperature_rules": ["confidence"],
        "commands": ["class-counts"],
    }
    bridge = _plugin(payload, "ekd-timm")
    assert bridge is not None and bridge["distribution"] == "ekd-timm"
    assert bridge["registers"] == {"models": _timm_names()}


def test_list_finds_the_timm_models_and_the_long_tailed_datasets(ekd_json: Callable[..., Any]) -> None:
    models = ekd_json("list", "models", "timm/*")
    assert [m["name"] for m in models] == sorted(_timm_names()) and len(models) >= 20
    assert {m["plugin"] for m in models} == {"ekd-timm"}
    resnet = next(m for m in models if m["name"] == "timm/resnet10t")
    assert resnet["info"]["params_100"] == 4973788 and resnet["info"]["timm_name"] == "resnet10t"
    datasets = {d["name"]: d["plugin"] for d in ekd_json("list", "datasets", "*-lt")}
    assert datasets["digits-lt"] == datasets["listfile-lt"] == "ekd-example"
    assert datasets["cifar100-lt"] == "ekd.datasets"  # the core's own long-tailed builder sits beside them
    assert [m["name"] for m in ekd_json("list", "models", "convmixer*")] == ["convmixer_tiny"]


def test_help_shows_the_plugin_command_without_importing_heavy_modules() -> None:
    code = (
        "import sys, json\n"
        "from ekdcli.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    *help_lines, modules = result.stdout.strip().splitlines()
    loaded = set(json.loads(modules))
    assert {"ekd_example", "ekd_timm"} <= loaded  # the plugins were really discovered...
    assert not loaded & {"torch", "timm", "ekd_timm.models", "ekd_example.command", "ekd_example.convmixer"}
    assert any("class-counts" in line and "Images per class" in line for line in help_lines)


@pytest.mark.parametrize(
    "argv", [["list", "models", "timm/*"], ["list", "models", "timm/*", "--json"], ["plugins"]]
)
def test_listing_timm_models_imports_neither_timm_nor_torch(argv: list[str]) -> None:
    code = (
        "import sys, json\n"
        "from ekdcli.cli.main import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    *listing, modules = result.stdout.strip().splitlines()
    assert "timm/resnet10t" in "\n".join(listing)  # the listing really ran
    loaded = set(json.loads(modules))
    assert "ekd_timm" in loaded and not loaded & {"timm", "torch", "ekd_timm.models"}


def test_disabled_plugins_are_gone(run_ekd: Callable[..., Any], ekd_json: Callable[..., Any]) -> None:
    env = {"EKD_DISABLE_PLUGINS": "ekd-example,ekd-timm"}
    names = {p["name"] for p in ekd_json("plugins", env=env)["plugins"]}
    assert "ekd.models" in names and not names & {"ekd-example", "ekd-timm"}
    result = run_ekd("list", "models", "timm/*", env=env)
    assert result.returncode == 2 and "no models match 'timm/*'" in result.stderr
    result = run_ekd("list", "datasets", "digits-lt", env={"EKD_DISABLE_PLUGINS": "ekd-example"})
    assert result.returncode == 2 and "no datasets match 'digits-lt'" in result.stderr


def _site_without(tmp_path: Path, dist_name: str | None) -> Path:
    """A copy (symlinks) of the environment's site-packages minus what ``pip uninstall dist_name`` removes.

    The distribution's RECORD lists every file pip installed for it (its dist-info and, for an
    editable install, the ``__editable__`` .pth that puts its sources on sys.path).
    """
    site_dir = Path(sysconfig.get_paths()["purelib"]).resolve()  # this interpreter's site-packages
    removed: set[str] = set()
    if dist_name is not None:
        dist = distribution(dist_name)
        assert Path(dist.locate_file("")).resolve() == site_dir, (
            "both packages must live in one site-packages"
        )
        for file in dist.files or ():
            parts = Path(file).parts
            if parts and parts[0] != "..":
                removed.add(parts[0])
        assert any(name.endswith(".dist-info") for name in removed)
    copy = tmp_path / f"site-without-{dist_name}"
    copy.mkdir()
    for entry in site_dir.iterdir():
        if entry.name not in removed:
            (copy / entry.name).symlink_to(entry)
    return copy


def _plugins_in(site: Path) -> tuple[set[str], str]:
    """Plugin names ``ekd plugins --json`` reports in an interpreter whose only site dir is ``site``.

    Its stderr ends with ``importable True|False``: whether ``ekd_example`` can still be imported.
    """
    code = (
        "import importlib.util, site, sys\n"
        f"site.addsitedir({str(site)!r})\n"
        "from ekdcli.cli.main import main\n"
        "main(['plugins', '--json'])\n"
        "print('importable', importlib.util.find_spec('ekd_example') is not None, file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    return {p["name"] for p in json.loads(result.stdout)["plugins"]}, result.stderr


def test_uninstalled_example_is_gone_and_the_rest_still_works(tmp_path: Path) -> None:
    everything, stderr = _plugins_in(_site_without(tmp_path, None))  # the mechanism itself loses nothing
    assert {"ekd-example", "ekd-timm", "ekd.models", "ekd.datasets"} <= everything
    assert stderr.strip().endswith("importable True")
    remaining, stderr = _plugins_in(_site_without(tmp_path, "ekd-example"))
    assert remaining == everything - {"ekd-example"}
    assert stderr.strip() == "importable False"  # its sources are off sys.path too, and no warning

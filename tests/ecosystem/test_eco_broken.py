"""What a broken third-party plugin does to the ekd command line (each installed in a throwaway folder)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("examples_installed")

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"

RAISES_AT_IMPORT = """
    raise ImportError("ekd-broken needs libwidget 2.0")
"""

RAISES_IN_FACTORY = """
    from ekdcli.sdk.hookspecs import hookimpl

    @hookimpl
    def register_models(register):
        register("kaboom_net", build, description="a model whose factory fails")

    def build(num_classes, in_channels=3, **options):
        raise RuntimeError("kaboom kernels are missing")
"""

CLAIMS_CONVMIXER = """
    from ekdcli.sdk.hookspecs import hookimpl

    @hookimpl
    def register_models(register):
        register("ConvMixer_Tiny", "ekd_clash_mod:build")
"""

MISSPELLED_HOOK = """
    from ekdcli.sdk.hookspecs import hookimpl

    @hookimpl
    def register_model(register):  # the hook is register_models
        register("stray_net", "ekd_stray_mod:build")
"""


def test_a_plugin_failing_at_import_is_a_warning_naming_it(
    install_fake_plugin: Callable[..., Any], run_ekd: Callable[..., Any]
) -> None:
    site = install_fake_plugin("ekd-broken", "ekd_broken_mod", RAISES_AT_IMPORT)
    result = run_ekd("plugins", "--json", extra_path=site)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    [warning] = payload["warnings"]
    assert warning.startswith(
        "plugin 'ekd-broken' (ekd-broken) failed to import: ImportError: ekd-broken needs"
    )
    assert "EKD_DISABLE_PLUGINS=ekd-broken" in warning
    # docs/plugins.md quotes this warning word for word (with the exception's message elided)
    quoted = "warning: " + warning.replace("ekd-broken needs libwidget 2.0", "<message>")
    assert quoted in GUIDE.read_text(encoding="utf-8")
    assert {"ekd-example", "ekd-timm", "ekd.models"} <= {p["name"] for p in payload["plugins"]}
    # every other command keeps working and says why, once, on stderr
    listed = run_ekd("list", "models", "convmixer*", extra_path=site)
    assert listed.returncode == 0 and "convmixer_tiny" in listed.stdout
    assert listed.stderr.count("warning: plugin 'ekd-broken'") == 1
    # disabling it silences the warning; strict mode makes it fatal, as one sentence
    quiet = run_ekd(
        "list", "models", "convmixer*", extra_path=site, env={"EKD_DISABLE_PLUGINS": "ekd-broken"}
    )
    assert quiet.returncode == 0 and quiet.stderr == ""
    strict = run_ekd("list", "models", extra_path=site, env={"EKD_STRICT_PLUGINS": "1"})
    assert (
        strict.returncode == 1 and "error: plugin 'ekd-broken' (ekd-broken) failed to import" in strict.stderr
    )
    assert "Traceback" not in strict.stderr


WRONG_SIGNATURE = """
    from ekdcli.sdk.hookspecs import hookimpl

    @hookimpl
    def register_models(register, registry):  # ekd passes only `register`
        register("odd_net", "ekd_odd_mod:build")
"""


def test_a_hook_implementation_with_the_wrong_signature_fails_at_load(
    install_fake_plugin: Callable[..., Any], run_ekd: Callable[..., Any]
) -> None:
    site = install_fake_plugin("ekd-odd", "ekd_odd_mod", WRONG_SIGNATURE)
    result = run_ekd("list", "models", extra_path=site)
    assert (result.returncode, result.stdout) == (1, "")
    [line] = result.stderr.splitlines()  # pluggy's multi-line message folded into the sentence
    assert line.startswith("error: plugin 'ekd-odd' implements a hook with the wrong signature (")
    assert "register_models(register, registry)" in line and "{'registry'}" in line
    assert line.endswith("; update the plugin or disable it with EKD_DISABLE_PLUGINS=ekd-odd.")
    fixed = run_ekd("list", "models", "resnet8", extra_path=site, env={"EKD_DISABLE_PLUGINS": "ekd-odd"})
    assert fixed.returncode == 0 and fixed.stdout.startswith("resnet8 ")


def test_a_factory_raising_is_a_clear_error_naming_the_plugin(
    install_fake_plugin: Callable[..., Any], run_ekd: Callable[..., Any]
) -> None:
    site = install_fake_plugin("ekd-kaboom", "ekd_kaboom_mod", RAISES_IN_FACTORY)
    assert run_ekd("list", "models", "kaboom*", extra_path=site).returncode == 0  # registering is fine
    result = run_ekd(
        "train", "--model", "kaboom_net", "--data", "fake", "--epochs", "1", "--limit-train", "16",
        "--limit-test", "8", extra_path=site,
    )  # fmt: skip
    assert result.returncode == 1
    assert (
        "error: plugin 'ekd-kaboom' failed to build model 'kaboom_net' "
        "(RuntimeError: kaboom kernels are missing)" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_two_plugins_claiming_one_name_is_an_error_naming_both(
    install_fake_plugin: Callable[..., Any], run_ekd: Callable[..., Any]
) -> None:
    site = install_fake_plugin("ekd-clash", "ekd_clash_mod", CLAIMS_CONVMIXER)
    result = run_ekd("train", "--model", "convmixer_tiny", "--epochs", "1", extra_path=site)
    assert result.returncode == 1
    assert "model name 'ConvMixer_Tiny' is registered by both plugin" in result.stderr  # names are case-blind
    assert "'ekd-clash'" in result.stderr and "'ekd-example'" in result.stderr
    assert result.stderr.strip().endswith(
        "; uninstall one of them or disable one with EKD_DISABLE_PLUGINS=ekd-clash (or =ekd-example)."
    )  # as docs/plugins.md shows it
    # commands that do not use the contested name keep working, with the conflict as a warning
    listed = run_ekd("list", "models", "resnet8", extra_path=site)
    assert listed.returncode == 0 and "resnet8" in listed.stdout
    assert "warning: model name 'ConvMixer_Tiny' is registered by both plugin" in listed.stderr
    assert "Traceback" not in result.stderr
    fixed = run_ekd("list", "models", "convmixer*", extra_path=site, env={"EKD_DISABLE_PLUGINS": "ekd-clash"})
    assert fixed.returncode == 0 and "[ekd-example]" in fixed.stdout


def test_a_hook_implementation_matching_no_hookspec_fails_at_load(
    install_fake_plugin: Callable[..., Any], run_ekd: Callable[..., Any]
) -> None:
    site = install_fake_plugin("ekd-stray", "ekd_stray_mod", MISSPELLED_HOOK)
    result = run_ekd("plugins", extra_path=site)
    assert result.returncode == 1
    assert "error: plugin 'ekd-stray' implements a hook that ekd does not define" in result.stderr
    assert "register_model" in result.stderr and "Traceback" not in result.stderr

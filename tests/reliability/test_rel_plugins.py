"""Broken and clashing plugins, in-process: a fake entry point stands for an installed package.

(tests/ecosystem runs the same situations through the installed ``ekd`` executable.)
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
from rel_helpers import DATA, one_line_error, snapshot

from ekdcli.sdk import plugins

CLASH = """
    from ekdcli.sdk.hookspecs import hookimpl

    @hookimpl
    def register_models(register):
        register("resnet8", "ekd_rel_clash:build", description="a second resnet8")
        register("rel_only_net", "ekd_rel_clash:build", description="a name nobody else has")
"""


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """``installed(name, module, source)``: an entry point ``name`` in group ``ekd`` (source None: a
    module that does not exist, so its import fails)."""
    points: list[EntryPoint] = []
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def install(name: str, module: str, source: str | None) -> None:
        if source is not None:
            (site / f"{module}.py").write_text(textwrap.dedent(source))
        points.append(EntryPoint(name=name, value=module, group=plugins.ENTRY_POINT_GROUP))

    monkeypatch.setattr(plugins, "entry_points", lambda group=None: list(points) if group == "ekd" else [])
    plugins.reset_plugins()
    yield install
    plugins.reset_plugins()


TRAIN = ("train", *DATA, "--epochs", "1", "--limit-train", "16", "--quiet")


def test_strict_plugins_stop_with_one_sentence_that_does_not_say_ekd_continues(
    installed: Any, ekd: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed("ekd-broken", "ekd_rel_missing_module", None)
    code, out, err = ekd("list", "models", "resnet8")
    assert code == 0 and out.startswith("resnet8")
    assert err.count("\n") == 1 and "ekd continues without it" in err  # the warning, once
    monkeypatch.setenv("EKD_STRICT_PLUGINS", "1")
    plugins.reset_plugins()
    code, out, err = ekd("list", "models")
    line = one_line_error(
        code, err, 1, "plugin 'ekd-broken' (?) failed to import", "EKD_STRICT_PLUGINS is set"
    )
    assert "continues" not in line and line.endswith("or disable it with EKD_DISABLE_PLUGINS=ekd-broken.")


def test_a_clash_fails_only_where_the_name_is_used_and_names_the_plugin_to_disable(
    installed: Any, ekd: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed("ekd-rel-clash", "ekd_rel_clash", CLASH)
    before = snapshot(tmp_path / "store")
    code, out, err = ekd(*TRAIN, "--model", "resnet8")
    warning, error = err.splitlines()  # the clash is a warning for every command, an error where used
    assert warning.startswith("warning: model name 'resnet8' is registered by both")
    one_line_error(
        code,
        error,
        1,
        "model name 'resnet8' is registered by both plugin 'ekd.models' and plugin 'ekd-rel-clash'",
        "disable one with EKD_DISABLE_PLUGINS=ekd-rel-clash (or =ekd.models)",
    )
    assert snapshot(tmp_path / "store") == before
    code, out, err = ekd("list", "models", "tiny*")  # other names keep working (warned once above)
    assert code == 0 and "tiny_cnn" in out
    code, out, _ = ekd("list", "models", "rel_only_net")
    assert code == 0 and "[ekd-rel-clash]" in out
    monkeypatch.setenv("EKD_DISABLE_PLUGINS", "ekd-rel-clash")  # the fix the message names
    plugins.reset_plugins()
    code, out, err = ekd("list", "models", "resnet8")
    assert code == 0 and "[ekd.models]" in out and err == ""


def test_an_unknown_name_whose_plugin_is_disabled_says_so(
    installed: Any, ekd: Any, refused: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed("ekd-rel-clash", "ekd_rel_clash", CLASH)
    monkeypatch.setenv("EKD_DISABLE_PLUGINS", "ekd-rel-clash")
    plugins.reset_plugins()
    refused(
        (*TRAIN, "--model", "rel_only_net"),
        2,
        "model 'rel_only_net' comes from plugin 'ekd-rel-clash', which EKD_DISABLE_PLUGINS disables",
    )
    monkeypatch.setenv("EKD_DISABLE_PLUGINS", "ekd.models")
    plugins.reset_plugins()
    refused(
        (*TRAIN, "--model", "tiny_cnn"),
        2,
        "model 'tiny_cnn' comes from plugin 'ekd.models'",
        "remove ekd.models from EKD_DISABLE_PLUGINS",
    )

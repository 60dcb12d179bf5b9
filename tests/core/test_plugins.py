"""Plugin discovery through real entry points, collisions, broken plugins, registries."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from ekdcli.sdk.plugins import Component, Registry, discover
from ekdcli.util.errors import PluginError, UsageError


def _install_fake_dist(root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """Write modules plus a ``*.dist-info`` with ``entry_points.txt``: what pip leaves behind."""
    info = root / f"{dist}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    lines = ["[ekd]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


GOOD = """
    from ekdcli.sdk.hookspecs import hookimpl

    @hookimpl
    def register_models(register):
        register("toynet", "toy_models:build", aliases=("toy",), description="a toy", info={"params_100": 10})

    def build(num_classes, in_channels=3):
        return ("toynet", num_classes, in_channels)
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m.startswith(("toy_", "dup_", "broken_", "stray_"))]:
        del sys.modules[name]


def test_entry_point_plugin_is_discovered_with_version_and_components(site: Path) -> None:
    _install_fake_dist(site, "ekd_toy", {"toy": "toy_models"}, {"toy_models": GOOD})
    found = discover()
    info = next(p for p in found.plugins if p.name == "toy")
    assert (info.distribution, info.version) == ("ekd_toy", "1.2.3")
    assert info.registered == {"models": ["toynet"]}
    component = found.registries["models"].get("TOY")  # alias, case-insensitive
    assert component.name == "toynet" and component.plugin == "toy"
    assert component.build(num_classes=7) == ("toynet", 7, 3)


def test_two_plugins_claiming_one_name_is_an_error_naming_both(site: Path) -> None:
    _install_fake_dist(site, "ekd_toy", {"toy": "toy_models"}, {"toy_models": GOOD})
    _install_fake_dist(
        site, "ekd_dup", {"dup": "dup_models"}, {"dup_models": GOOD.replace("toy_models", "dup_models")}
    )
    found = discover()  # the rest of the registry stays usable ...
    [warning] = [w for w in found.warnings if "toynet" in w]
    assert "'dup'" in warning and "'toy'" in warning
    with pytest.raises(PluginError) as err:  # ... but the contested name is an error naming both
        found.registries["models"].get("toynet")
    assert err.value.message == warning
    assert "EKD_DISABLE_PLUGINS=dup (or =toy)" in warning
    assert "resnet8" in found.registries["models"]


def test_a_third_party_plugin_named_like_a_builtin_kind_does_not_clash(site: Path) -> None:
    _install_fake_dist(site, "ekd_toy", {"models": "toy_models"}, {"toy_models": GOOD})
    found = discover()
    names = {p.name: p for p in found.plugins}
    assert names["models"].registered == {"models": ["toynet"]}
    assert names["ekd.models"].registered["models"][0] == "resnet8"  # the built-in zoo is intact
    assert not found.warnings


def test_broken_plugin_warns_and_the_rest_keeps_working(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_fake_dist(site, "ekd_toy", {"toy": "toy_models"}, {"toy_models": GOOD})
    _install_fake_dist(
        site, "ekd_broken", {"broken": "broken_mod"}, {"broken_mod": "raise RuntimeError('boom')"}
    )
    found = discover()
    assert "toynet" in found.registries["models"]
    assert len([w for w in found.warnings if "'broken'" in w and "boom" in w]) == 1
    monkeypatch.setenv("EKD_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="broken"):
        discover()
    monkeypatch.setenv("EKD_DISABLE_PLUGINS", "broken, other")
    assert not discover().warnings


def test_hook_implementation_without_hookspec_is_rejected(site: Path) -> None:
    stray = """
        from ekdcli.sdk.hookspecs import hookimpl

        @hookimpl
        def register_modelz(register):
            pass
    """
    _install_fake_dist(site, "ekd_stray", {"stray": "stray_mod"}, {"stray_mod": stray})
    with pytest.raises(PluginError, match="stray.*does not define"):
        discover()


def test_factory_failure_names_the_plugin() -> None:
    def explode(**_: object) -> None:
        raise ValueError("bad weights")

    component = Component(kind="models", name="m", factory=explode, plugin="acme")
    with pytest.raises(
        PluginError, match=r"plugin 'acme' failed to build model 'm' \(ValueError: bad weights\)"
    ):
        component.build()
    lazy = Component(kind="models", name="m", factory="no_such_module_xyz:f", plugin="acme")
    with pytest.raises(PluginError, match="plugin 'acme' could not load model 'm'"):
        lazy.load()


def test_registry_wildcards_aliases_and_suggestions() -> None:
    reg = Registry("models")
    for name, aliases in (("resnet20", ()), ("resnet32x4", ("res32x4",)), ("wrn_40_2", ("wrn40_2",))):
        reg.add(Component(kind="models", name=name, factory=str, plugin="p", aliases=aliases))
    assert [c.name for c in reg.list("resnet*")] == ["resnet20", "resnet32x4"]
    assert [c.name for c in reg.list("res32*")] == ["resnet32x4"]
    assert reg.get("WRN40_2").name == "wrn_40_2"
    with pytest.raises(UsageError, match="Did you mean 'resnet20'") as err:
        reg.get("resnet2O")
    assert err.value.exit_code == 2
    conflict = reg.add(Component(kind="models", name="x", factory=str, plugin="p", aliases=("resnet20",)))
    assert conflict is not None and "twice by plugin 'p'" in conflict
    with pytest.raises(PluginError, match="twice by plugin 'p'"):
        reg.get("resnet20")
    assert "x" not in reg  # a conflicting component registers none of its names
    # suggestions name canonical names only, never an alias beside its own name
    with pytest.raises(UsageError) as err:
        reg.get("wrn40_3")
    assert "Did you mean 'wrn_40_2'?" in err.value.message and "wrn40_2'" not in err.value.message


HALF_THEN_RAISE = """
    from ekdcli.sdk.hookspecs import hookimpl

    @hookimpl
    def register_models(register):
        register("halfnet_a", "half_mod:build")
        register("halfnet_b", 42)  # not a factory: the whole hook is refused

    @hookimpl
    def register_datasets(register):
        register("half-data", "half_mod:build")
"""


def test_a_hook_that_fails_half_way_registers_none_of_that_kind(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_fake_dist(site, "ekd_half", {"half": "half_mod"}, {"half_mod": HALF_THEN_RAISE})
    found = discover()
    [warning] = [w for w in found.warnings if "'half'" in w]
    assert warning == (
        "plugin 'half' failed while registering models (TypeError: model 'halfnet_b' needs a callable "
        "or a 'module:attr' string as its factory, got 42); its components are skipped "
        "(EKD_DISABLE_PLUGINS=half hides this)."
    )
    assert "halfnet_a" not in found.registries["models"]  # "skipped" means all of them
    assert "half-data" in found.registries["datasets"]  # its other hooks still count
    info = next(p for p in found.plugins if p.name == "half")
    assert info.registered == {"datasets": ["half-data"]}
    monkeypatch.setenv("EKD_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin 'half' failed while registering models"):
        discover()


def test_two_distributions_declaring_one_entry_point_name_is_an_error(site: Path) -> None:
    _install_fake_dist(site, "ekd_toy", {"toy": "toy_models"}, {"toy_models": GOOD})
    _install_fake_dist(
        site, "ekd_dup", {"toy": "dup_models"}, {"dup_models": GOOD.replace("toynet", "dupnet")}
    )
    with pytest.raises(PluginError) as err:
        discover()
    message = err.value.message  # (which of the two comes first depends on the folder listing)
    assert message.startswith("plugin name 'toy' is declared by both distribution ")
    assert "'ekd_dup' (module dup_models)" in message and "'ekd_toy' (module toy_models)" in message
    assert message.endswith("; uninstall one of them.")


def test_a_checkout_that_is_not_installed_still_has_its_builtins() -> None:
    """Without the installed packages' path hooks (-S, no .pth files) ekd_plugins is found beside ekdcli."""
    import site
    import subprocess

    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], *sys.argv[2:]]\n"
        "import importlib.util; print(importlib.util.find_spec('ekd_plugins') is None)\n"
        "from ekdcli.sdk.plugins import discover\n"
        "found = discover(); print(sorted(p.name for p in found.plugins if p.name.startswith('ekd.')))\n"
        "print(found.registries['models'].get('resnet8').plugin)\n"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code, str(root), *site.getsitepackages()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    before, plugins, owner = done.stdout.splitlines()
    assert before == "True"  # not importable until the plugin manager adds plugins/ to the path
    assert plugins == (
        "['ekd.augmentations', 'ekd.datasets', 'ekd.distillers', 'ekd.executors', 'ekd.models', 'ekd.temperature_rules', "
        "'ekd.trackers']"
    )
    assert owner == "ekd.models"

"""The plugin manager: built-in plugins, then every ``ekd`` entry point, into one registry per kind.

The first-party plugins (``plugins/ekd_plugins``) are registered here by module name under
``ekd.*`` names, exactly as a third-party plugin's module is registered after its entry point
is loaded; so a third-party entry point called ``models`` never clashes with them, and a
checkout that is not installed still has its built-ins.  Each hook implementation is called
on its own with a ``register`` callable bound to its plugin, so every name is attributed to
the plugin that registered it.

Environment:
  ``EKD_STRICT_PLUGINS=1``  a plugin that fails to load is fatal instead of a warning.
  ``EKD_DISABLE_PLUGINS``   comma-separated plugin names to skip (``ekd plugins`` lists them).
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from ekdcli.sdk import hookspecs
from ekdcli.sdk.registry import KINDS, Component, Registry
from ekdcli.util.errors import EkdError, PluginError

ENTRY_POINT_GROUP = "ekd"
# plugin name -> module of the first-party plugins, registered like any entry point's module
BUILTIN_PLUGINS = {
    "ekd.models": "ekd_plugins.models",
    "ekd.datasets": "ekd_plugins.datasets",
    "ekd.distillers": "ekd_plugins.distillers",
    "ekd.temperature_rules": "ekd_plugins.temperature_rules",
    "ekd.augmentations": "ekd_plugins.augmentations",
    "ekd.trackers": "ekd_plugins.trackers",
    "ekd.executors": "ekd_plugins.executors",
}


@dataclass
class PluginInfo:
    name: str
    module: str
    distribution: str
    version: str
    registered: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Loaded:
    """A plugin module ready to register: ``(name, module, distribution, version)``."""

    name: str
    module: Any
    distribution: str
    version: str


@dataclass
class Plugins:
    """Everything discovered: one registry per kind, plus who registered what."""

    registries: dict[str, Registry]
    plugins: list[PluginInfo]
    warnings: list[str]

    def __getattr__(self, kind: str) -> Registry:
        registries = self.__dict__.get("registries", {})
        if kind in registries:
            return registries[kind]
        raise AttributeError(kind)


def disabled_plugins() -> set[str]:
    return {name.strip() for name in os.environ.get("EKD_DISABLE_PLUGINS", "").split(",") if name.strip()}


def strict() -> bool:
    return os.environ.get("EKD_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes", "on"}


def _as_loaded(item: Loaded | tuple[str, Any, str, str]) -> Loaded:
    return item if isinstance(item, Loaded) else Loaded(*item)


def discover(modules: Iterable[Loaded | tuple[str, Any, str, str]] | None = None) -> Plugins:
    """Load the built-ins and every ``ekd`` entry point (or just the given plugin modules).

    A plugin whose import fails is skipped with a warning naming it (fatal when
    ``EKD_STRICT_PLUGINS`` is set); two plugins registering one name is an error naming both;
    a hook implementation matching no hookspec is an error.
    """
    warnings: list[str] = []
    disabled = disabled_plugins()
    if modules is None:
        loaded = list(_builtin_plugins(disabled)) + list(_entry_point_plugins(disabled, warnings))
    else:
        loaded = [m for m in map(_as_loaded, modules) if m.name not in disabled]
    found = _register_all(loaded, warnings)
    if modules is None and disabled:
        _note_disabled(found.registries, disabled)
    return found


def _register_all(loaded: list[Loaded], warnings: list[str]) -> Plugins:
    """Every kind's registry from the loaded plugin modules.

    The built-ins register first, so a third-party name that clashes with a built-in one is the
    newcomer, and the clash's hint names the third-party plugin to disable.
    """
    manager, infos = _manager(loaded)
    registries = {kind: Registry(kind) for kind in KINDS}
    by_name = {info.name: info for info in infos}
    for kind in KINDS:
        hook = getattr(manager.hook, f"register_{kind}")
        impls = list(reversed(hook.get_hookimpls()))
        impls.sort(key=lambda impl: impl.plugin_name not in BUILTIN_PLUGINS)  # stable: built-ins first
        for impl in impls:
            _register_from(impl.function, kind, by_name[impl.plugin_name], registries[kind], warnings)
    return Plugins(registries=registries, plugins=infos, warnings=warnings)


def _manager(loaded: list[Loaded]) -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """A pluggy manager holding every loaded plugin module, checked against the hookspecs."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    for item in loaded:
        try:
            manager.register(item.module, name=item.name)
        except pluggy.PluginValidationError as exc:  # a hook taking arguments its spec does not pass
            raise PluginError(
                f"plugin {item.name!r} implements a hook with the wrong signature ({' '.join(str(exc).split())}); "
                f"update the plugin or disable it with EKD_DISABLE_PLUGINS={item.name}."
            ) from exc
        except ValueError as exc:  # the same module under two entry-point names
            raise PluginError(f"plugin {item.name!r} could not be registered ({exc}).") from exc
        module_name = getattr(item.module, "__name__", str(item.module))
        infos.append(PluginInfo(item.name, module_name, item.distribution, item.version))
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        name = manager.get_name(exc.plugin) or "?"
        raise PluginError(
            f"plugin {name!r} implements a hook that ekd does not define ({' '.join(str(exc).split())}); "
            f"update the plugin or disable it with EKD_DISABLE_PLUGINS={name}."
        ) from exc
    return manager, infos


def _register_from(
    hook: Callable[..., Any], kind: str, info: PluginInfo, registry: Registry, warnings: list[str]
) -> None:
    """Call one plugin's ``register_<kind>`` hook; only a hook that completes registers anything."""
    staged: list[Component] = []

    def register(
        name: str,
        factory: Callable[..., Any] | str,
        *,
        aliases: Iterable[str] = (),
        description: str = "",
        info: dict[str, Any] | None = None,
    ) -> None:
        noun = KINDS[kind]
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"a {noun} needs a non-empty string name, got {name!r}")
        if not callable(factory) and not (isinstance(factory, str) and ":" in factory):
            raise TypeError(
                f"{noun} {name!r} needs a callable or a 'module:attr' string as its factory, got {factory!r}"
            )
        component = Component(kind, name, factory, plugin_name, tuple(aliases), description, dict(info or {}))
        staged.append(component)

    plugin_name = info.name
    try:
        hook(register=register)
    except (EkdError, KeyboardInterrupt):
        raise
    except BaseException as exc:  # SystemExit too: a broken plugin never takes ekd down with it
        message = f"plugin {plugin_name!r} failed while registering {kind} ({type(exc).__name__}: {exc})"
        if strict():
            raise PluginError(message + ".") from exc
        warnings.append(
            message + f"; its components are skipped (EKD_DISABLE_PLUGINS={plugin_name} hides this)."
        )
        return
    for component in staged:
        conflict = registry.add(component)
        if conflict is None:
            info.registered.setdefault(kind, []).append(component.name)
        else:
            warnings.append(conflict)


def _builtin_plugins(disabled: set[str]) -> Iterable[Loaded]:
    """The first-party plugins; from a checkout that is not installed, ``plugins/`` is put on the path."""
    from ekdcli import __version__

    for name, module_name in BUILTIN_PLUGINS.items():
        if name not in disabled:
            yield Loaded(name, _import_builtin(module_name), "ekd", __version__)


def _import_builtin(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        checkout = Path(__file__).resolve().parents[2] / "plugins"
        if exc.name != "ekd_plugins" or not (checkout / "ekd_plugins").is_dir():
            raise
        sys.path.append(str(checkout))
        return importlib.import_module(module_name)


def _entry_point_plugins(disabled: set[str], warnings: list[str]) -> Iterable[Loaded]:
    seen: dict[str, tuple[str, str]] = {name: ("ekd", module) for name, module in BUILTIN_PLUGINS.items()}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in disabled:
            continue
        dist = getattr(ep, "dist", None)
        dist_name = dist.name if dist is not None else "?"
        if ep.name in seen:
            if seen[ep.name][1] == ep.value:  # one package found twice on sys.path
                continue
            other_dist, other_module = seen[ep.name]
            raise PluginError(
                f"plugin name {ep.name!r} is declared by both distribution {other_dist!r} "
                f"(module {other_module}) and distribution {dist_name!r} (module {ep.value}); "
                f"uninstall one of them."
            )
        seen[ep.name] = (dist_name, ep.value)
        try:
            module = ep.load()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit too: a broken plugin never takes ekd down with it
            failure = f"plugin {ep.name!r} ({dist_name}) failed to import: {type(exc).__name__}: {exc}"
            if strict():
                raise PluginError(
                    f"{failure}; EKD_STRICT_PLUGINS is set, so ekd stops: fix or uninstall {dist_name}, "
                    f"or disable it with EKD_DISABLE_PLUGINS={ep.name}."
                ) from exc
            warnings.append(
                f"{failure}. ekd continues without it; set EKD_DISABLE_PLUGINS={ep.name} to silence this."
            )
            continue
        yield Loaded(ep.name, module, dist_name, dist.version if dist is not None else "?")


def _note_disabled(registries: dict[str, Registry], disabled: set[str]) -> None:
    """Remember which names the disabled plugins would have registered (for "unknown" messages)."""
    plugins = [Loaded(name, module, "", "") for name, module in _disabled_modules(disabled)]
    if not plugins:
        return
    try:
        found = _register_all(plugins, [])  # not discover(): it would skip them, being disabled
    except EkdError:
        return
    for kind, registry in found.registries.items():
        for component in registry.list():
            for label in (component.name, *component.aliases):
                registries[kind].disabled.setdefault(label.strip().lower(), component.plugin)


def _disabled_modules(disabled: set[str]) -> Iterable[tuple[str, ModuleType]]:
    """Modules of the disabled plugins (cheap to import: plugins register names, not torch)."""
    for name in sorted(disabled & set(BUILTIN_PLUGINS)):
        try:
            yield name, _import_builtin(BUILTIN_PLUGINS[name])
        except ImportError:
            continue
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in disabled and ep.name not in BUILTIN_PLUGINS:
            try:
                module = ep.load()
            except KeyboardInterrupt:
                raise
            except BaseException:  # a disabled plugin may well be the broken one
                continue
            yield ep.name, module


@functools.lru_cache(maxsize=1)
def _cached() -> Plugins:
    return discover()


def get_plugins(*, quiet: bool = False) -> Plugins:
    """The process-wide plugin set (discovered once); warnings go to stderr once."""
    plugins = _cached()
    if not quiet and plugins.warnings and not _warned:
        for message in plugins.warnings:
            print(f"warning: {message}", file=sys.stderr)
        _set_warned(True)
    return plugins


_warned = False


def _set_warned(value: bool) -> None:
    global _warned
    _warned = value


def reset_plugins() -> None:
    """Forget the discovered plugins (tests, or after installing a package in-process)."""
    _cached.cache_clear()
    _set_warned(False)


def registry(kind: str) -> Registry:
    return get_plugins().registries[kind]

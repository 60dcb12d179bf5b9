"""Plugin discovery (pluggy, entry-point group ``ekd``) and the registries it fills.

Every component -- first-party or third-party -- arrives through an entry
point whose module implements hooks of :mod:`ekdcli.hookspecs`.  Each hook
implementation is called on its own with a ``register`` callable bound to its
plugin, so every name is attributed to the plugin that registered it.

Environment:
  ``EKD_STRICT_PLUGINS=1``  a plugin that fails to load is fatal instead of a warning.
  ``EKD_DISABLE_PLUGINS``   comma-separated entry-point names to skip.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from ekdcli import hookspecs
from ekdcli.errors import EkdError, PluginError, UsageError, did_you_mean

ENTRY_POINT_GROUP = "ekd"
KINDS = ("models", "datasets", "distillers", "augmentations", "commands")
SINGULAR = {
    "models": "model",
    "datasets": "dataset",
    "distillers": "distiller",
    "augmentations": "augmentation",
    "commands": "command",
}


def _key(name: str) -> str:
    """Lookup key: case-insensitive, so ``MobileNetV2`` and ``mobilenetv2`` are one name."""
    return name.strip().lower()


@dataclass
class Component:
    """One registered model, dataset, distiller, augmentation or command."""

    kind: str
    name: str
    factory: Callable[..., Any] | str
    plugin: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Callable[..., Any]:
        """The factory itself, importing ``"module:attr"`` strings on first use."""
        if callable(self.factory):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
        except Exception as exc:
            raise PluginError(
                f"plugin {self.plugin!r} could not load {SINGULAR[self.kind]} {self.name!r} "
                f"from {self.factory!r} ({type(exc).__name__}: {exc}); reinstall or disable it "
                f"with EKD_DISABLE_PLUGINS={self.plugin}."
            ) from exc
        self.factory = target
        return target

    def build(self, *args: Any, **kwargs: Any) -> Any:
        """Call the factory; a failure inside a plugin names that plugin."""
        factory = self.load()
        try:
            return factory(*args, **kwargs)
        except EkdError:
            raise
        except TypeError as exc:
            # Options the component does not take (rejected by its signature, or by a library below it).
            if "unexpected keyword argument" in str(exc):
                raise UsageError(
                    f"{SINGULAR[self.kind]} {self.name!r} does not accept that option ({exc})."
                ) from exc
            raise PluginError(
                f"plugin {self.plugin!r} failed to build {SINGULAR[self.kind]} {self.name!r} ({exc})."
            ) from exc
        except Exception as exc:
            raise PluginError(
                f"plugin {self.plugin!r} failed to build {SINGULAR[self.kind]} {self.name!r} "
                f"({type(exc).__name__}: {exc})."
            ) from exc


class Registry:
    """Components of one kind, with aliases, wildcard listing and helpful errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Component] = {}
        self._lookup: dict[str, str] = {}  # key of a name or alias -> canonical name

    def add(self, component: Component) -> None:
        labels = {_key(label): label for label in (component.name, *component.aliases)}
        for key, label in labels.items():
            owner_name = self._lookup.get(key)
            if owner_name is None:
                continue
            owner = self._items[owner_name].plugin
            who = (
                f"twice by plugin {owner!r}"
                if owner == component.plugin
                else (f"by both plugin {owner!r} and plugin {component.plugin!r}")
            )
            raise PluginError(
                f"{SINGULAR[self.kind]} name {label!r} is registered {who}; uninstall one of them "
                f"or disable it with EKD_DISABLE_PLUGINS=<plugin>."
            )
        self._items[component.name] = component
        for key in labels:
            self._lookup[key] = component.name

    def __contains__(self, name: str) -> bool:
        return _key(name) in self._lookup

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> Component:
        canonical = self._lookup.get(_key(name))
        if canonical is None:
            labels = list(self._items) + [a for c in self._items.values() for a in c.aliases]
            raise UsageError(
                f"unknown {SINGULAR[self.kind]} {name!r}.{did_you_mean(name, labels)} "
                f"Run 'ekd list {self.kind}' to see all."
            )
        return self._items[canonical]

    def list(self, pattern: str = "*") -> list[Component]:
        """Components whose name or an alias matches the shell-style ``pattern``."""
        pat = pattern.lower()
        return [
            c
            for name, c in sorted(self._items.items())
            if any(fnmatch.fnmatchcase(label.lower(), pat) for label in (name, *c.aliases))
        ]


@dataclass
class PluginInfo:
    name: str
    module: str
    distribution: str
    version: str
    registered: dict[str, list[str]] = field(default_factory=dict)


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


def _disabled() -> set[str]:
    return {name.strip() for name in os.environ.get("EKD_DISABLE_PLUGINS", "").split(",") if name.strip()}


def _strict() -> bool:
    return os.environ.get("EKD_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes", "on"}


def discover(modules: Iterable[tuple[str, Any, str, str]] | None = None) -> Plugins:
    """Load every ``ekd`` entry point (or the given ``(name, module, dist, version)`` list).

    A plugin whose import fails is skipped with a warning naming it (fatal when
    ``EKD_STRICT_PLUGINS`` is set); two plugins registering one name is an
    error naming both; a hook implementation matching no hookspec is an error.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    warnings: list[str] = []
    infos: list[PluginInfo] = []
    disabled = _disabled()
    loaded = list(modules) if modules is not None else list(_load_entry_points(disabled, warnings))
    for name, module, dist, version in loaded:
        if name in disabled:
            continue
        try:
            manager.register(module, name=name)
        except pluggy.PluginValidationError as exc:  # a hook taking arguments its spec does not pass
            raise PluginError(
                f"plugin {name!r} implements a hook with the wrong signature ({' '.join(str(exc).split())}); "
                f"update the plugin or disable it with EKD_DISABLE_PLUGINS={name}."
            ) from exc
        except ValueError as exc:  # the same module under two entry-point names
            raise PluginError(f"plugin {name!r} could not be registered ({exc}).") from exc
        infos.append(
            PluginInfo(
                name=name, module=getattr(module, "__name__", str(module)), distribution=dist, version=version
            )
        )
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        name = manager.get_name(exc.plugin) or "?"
        raise PluginError(
            f"plugin {name!r} implements a hook that ekd does not define ({' '.join(str(exc).split())}); "
            f"update the plugin or disable it with EKD_DISABLE_PLUGINS={name}."
        ) from exc

    registries = {kind: Registry(kind) for kind in KINDS}
    by_name = {info.name: info for info in infos}
    for kind in KINDS:
        hook = getattr(manager.hook, f"register_{kind}")
        for impl in reversed(hook.get_hookimpls()):  # registration order = discovery order
            info = by_name[impl.plugin_name]
            staged: list[Component] = []

            def register(
                name: str,
                factory: Callable[..., Any] | str,
                *,
                aliases: Iterable[str] = (),
                description: str = "",
                info: dict[str, Any] | None = None,
                _kind: str = kind,
                _plugin: str = info.name,
                _staged: list[Component] = staged,
            ) -> None:
                if not isinstance(name, str) or not name.strip():
                    raise TypeError(f"a {SINGULAR[_kind]} needs a non-empty string name, got {name!r}")
                if not callable(factory) and not (isinstance(factory, str) and ":" in factory):
                    raise TypeError(
                        f"{SINGULAR[_kind]} {name!r} needs a callable or a 'module:attr' string "
                        f"as its factory, got {factory!r}"
                    )
                _staged.append(
                    Component(
                        kind=_kind,
                        name=name,
                        factory=factory,
                        plugin=_plugin,
                        aliases=tuple(aliases),
                        description=description,
                        info=dict(info or {}),
                    )
                )

            try:
                impl.function(register=register)
            except EkdError:
                raise
            except Exception as exc:
                message = (
                    f"plugin {info.name!r} failed while registering {kind} ({type(exc).__name__}: {exc})"
                )
                if _strict():
                    raise PluginError(message + ".") from exc
                warnings.append(message + "; its components are skipped.")
                continue
            # only a hook that completed registers anything (so "skipped" above is the whole truth)
            for component in staged:
                registries[kind].add(component)
                info.registered.setdefault(kind, []).append(component.name)
    return Plugins(registries=registries, plugins=infos, warnings=warnings)


def _load_entry_points(disabled: set[str], warnings: list[str]) -> Iterable[tuple[str, Any, str, str]]:
    seen: dict[str, tuple[str, str]] = {}  # entry-point name -> (distribution, module)
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
        version = dist.version if dist is not None else "?"
        try:
            module = ep.load()
        except Exception as exc:
            message = (
                f"plugin {ep.name!r} ({dist_name}) failed to import: {type(exc).__name__}: {exc}. "
                f"ekd continues without it; set EKD_DISABLE_PLUGINS={ep.name} to silence this."
            )
            if _strict():
                raise PluginError(message) from exc
            warnings.append(message)
            continue
        yield ep.name, module, dist_name, version


@functools.lru_cache(maxsize=1)
def _cached() -> Plugins:
    return discover()


def get_plugins(*, quiet: bool = False) -> Plugins:
    """The process-wide plugin set (discovered once); warnings go to stderr once."""
    plugins = _cached()
    if not quiet and plugins.warnings and not getattr(get_plugins, "_warned", False):
        for message in plugins.warnings:
            print(f"warning: {message}", file=sys.stderr)
        get_plugins._warned = True  # type: ignore[attr-defined]
    return plugins


def reset_plugins() -> None:
    """Forget the discovered plugins (tests, or after installing a package in-process)."""
    _cached.cache_clear()
    get_plugins._warned = False  # type: ignore[attr-defined]


def registry(kind: str) -> Registry:
    return get_plugins().registries[kind]

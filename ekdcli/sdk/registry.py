"""Registries: the components of one kind (models, datasets, ...) by name, with aliases.

A :class:`Component` is what a plugin registered: a name, a factory (a callable or a
``"module:attr"`` string imported on first use), aliases, a description and static ``info``
(option defaults, hints) that ``ekd list`` shows without importing torch.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ekdcli.sdk.options import defaults, is_record, option_help
from ekdcli.util.errors import EkdError, PluginError, UsageError, closest

# kind -> singular noun; each kind has a ``register_<kind>`` hook in hookspecs.
KINDS: dict[str, str] = {
    "models": "model",
    "datasets": "dataset",
    "distillers": "distiller",
    "temperature_rules": "temperature rule",
    "augmentations": "augmentation",
    "trackers": "tracker",
    "commands": "command",
    "executors": "executor",
}


def _key(name: str) -> str:
    """Lookup key: case-insensitive, so ``MobileNetV2`` and ``mobilenetv2`` are one name."""
    return name.strip().lower()


@dataclass
class Component:
    """One registered model, dataset, distiller, temperature rule, augmentation, tracker, command or executor."""

    kind: str
    name: str
    factory: Callable[..., Any] | str
    plugin: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    # The option record ``info["options"]`` came from (sdk/options.py), None for a plain dict.
    option_record: Any = None

    def __post_init__(self) -> None:
        """An option record in ``info["options"]`` becomes its defaults (and ``option_help``)."""
        declared = self.info.get("options")
        if is_record(declared):
            self.option_record = declared
            self.info["options"] = defaults(declared)
            helps = option_help(declared)
            if helps:
                self.info["option_help"] = helps

    @property
    def noun(self) -> str:
        return KINDS.get(self.kind, self.kind)

    def load(self) -> Callable[..., Any]:
        """The factory itself, importing ``"module:attr"`` strings on first use."""
        if callable(self.factory):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit too: a plugin never ends ekd silently
            raise PluginError(
                f"plugin {self.plugin!r} could not load {self.noun} {self.name!r} "
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
                raise UsageError(f"{self.noun} {self.name!r} does not accept that option ({exc}).") from exc
            raise PluginError(
                f"plugin {self.plugin!r} failed to build {self.noun} {self.name!r} ({exc})."
            ) from exc
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit too: a plugin never ends ekd silently
            raise PluginError(
                f"plugin {self.plugin!r} failed to build {self.noun} {self.name!r} "
                f"({type(exc).__name__}: {exc})."
            ) from exc


class Registry:
    """Components of one kind, with aliases, wildcard listing and helpful errors."""

    def __init__(self, kind: str, disabled: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.noun = KINDS.get(kind, kind)
        self._items: dict[str, Component] = {}
        self._lookup: dict[str, str] = {}  # key of a name or alias -> canonical name
        # names whose plugin is disabled -> that plugin (so "unknown" can say why)
        self.disabled: dict[str, str] = dict(disabled or {})
        self.conflicts: dict[str, str] = {}  # key of a name two plugins claim -> the error naming both

    def add(self, component: Component) -> str | None:
        """Register ``component``; a name another plugin already holds is a conflict, returned as text.

        A conflicting component is not registered, and looking the name up raises the conflict, so
        the commands that do not use it keep working while the one that does names both plugins.
        """
        labels = {_key(label): label for label in (component.name, *component.aliases)}
        for key, label in labels.items():
            owner_name = self._lookup.get(key)
            if owner_name is None:
                continue
            owner = self._items[owner_name].plugin
            if owner == component.plugin:
                who, fix = f"twice by plugin {owner!r}", f"fix plugin {owner!r}"
            else:
                who = f"by both plugin {owner!r} and plugin {component.plugin!r}"
                fix = (
                    f"uninstall one of them or disable one with EKD_DISABLE_PLUGINS={component.plugin} "
                    f"(or ={owner})"
                )
            message = f"{self.noun} name {label!r} is registered {who}; {fix}."
            self.conflicts[key] = message
            return message
        self._items[component.name] = component
        for key in labels:
            self._lookup[key] = component.name
        return None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _key(name) in self._lookup

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> Component:
        if _key(name) in self.conflicts:
            raise PluginError(self.conflicts[_key(name)])
        canonical = self._lookup.get(_key(name))
        if canonical is None:
            raise UsageError(self._unknown(name))
        return self._items[canonical]

    def _unknown(self, name: str) -> str:
        plugin = self.disabled.get(_key(name))
        if plugin is not None:
            return (
                f"{self.noun} {name!r} comes from plugin {plugin!r}, which EKD_DISABLE_PLUGINS disables; "
                f"remove {plugin} from EKD_DISABLE_PLUGINS to use it."
            )
        # suggest canonical names only: an alias hit points to its component's name
        labels = {label: c.name for c in self._items.values() for label in (c.name, *c.aliases)}
        hits = dict.fromkeys(labels[hit] for hit in closest(name, labels))
        hint = f" Did you mean {', '.join(repr(h) for h in hits)}?" if hits else ""
        return f"unknown {self.noun} {name!r}.{hint} Run 'ekd list {self.kind.replace('_', '-')}' to see all."

    def list(self, pattern: str = "*") -> list[Component]:
        """Components whose name or an alias matches the shell-style ``pattern``."""
        pat = pattern.lower()
        return [
            c
            for name, c in sorted(self._items.items())
            if any(fnmatch.fnmatchcase(label.lower(), pat) for label in (name, *c.aliases))
        ]

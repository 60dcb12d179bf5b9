"""``ekd plugins`` and ``ekd list``: what is installed, without importing torch."""

from __future__ import annotations

from typing import Any

import click

from ekdcli.cli.options import options
from ekdcli.jobs.console import Console
from ekdcli.sdk.plugins import KINDS, Component, get_plugins
from ekdcli.util.errors import UsageError, did_you_mean

# "temperature-rules", "temperature_rule", "model": every spelling of a kind
_KIND_ALIASES = {
    spelling: k for k in KINDS for name in (k, k.rstrip("s")) for spelling in (name, name.replace("_", "-"))
}


@click.command("plugins")
@options("json", "debug")
def plugins(json: bool | None, debug: bool | None) -> None:
    """Installed plugins, their versions and what each registers.

    \b
    Example:
      ekd plugins
      ekd plugins --json
    """
    found = get_plugins(quiet=True)  # its warnings are part of the listing below
    payload = [
        {
            "name": p.name,
            "module": p.module,
            "distribution": p.distribution,
            "version": p.version,
            "registers": p.registered,
        }
        for p in found.plugins
    ]
    lines = []
    for p in found.plugins:
        lines.append(f"{p.name}  ({p.distribution} {p.version}, module {p.module})")
        for kind, names in sorted(p.registered.items()):
            lines.append(f"    {kind:<14} {len(names):>3}: {', '.join(names)}")
    for message in found.warnings:
        lines.append(f"warning: {message}")
    Console(json_mode=bool(json)).result({"plugins": payload, "warnings": found.warnings}, "\n".join(lines))


def _describe(component: Component) -> dict[str, Any]:
    return {
        "name": component.name,
        "aliases": list(component.aliases),
        "plugin": component.plugin,
        "description": component.description,
        "info": component.info,
    }


# Where a component's options are set (a TOML table, or --set TABLE.KEY=VALUE).
_OPTION_TABLE = {
    "datasets": "data_options",
    "distillers": "distiller",
    "temperature_rules": "temperature",
    "augmentations": "augmentation",
}


def _options_text(kind: str, component: Component) -> str:
    """The options of one component with their defaults, and where to set them."""
    defaults = component.info.get("options")
    table = _OPTION_TABLE.get(kind)
    if not isinstance(defaults, dict) or not defaults or table is None:
        return ""
    where = f"[{table}]"
    if kind in ("distillers", "temperature_rules") and component.info.get("needs_energy"):
        where += " (energy options also in [energy])"
    lines = []
    if component.info.get("temperature_rule"):
        lines.append(
            f"temperature rule: {component.info['temperature_rule']} (another with --temperature-rule; "
            "'ekd list temperature-rules')"
        )
    lines.append(f"options, with defaults (set in {where} of ekd.toml or with --set {table}.KEY=VALUE):")
    width = max(len(name) for name in defaults)
    helps = component.info.get("option_help") or {}  # from the plugin's option record
    shown = {name: "-" if value is None else str(value) for name, value in defaults.items()}
    value_width = max(len(text) for text in shown.values())
    lines += [
        f"  {name:<{width}}  {text:<{value_width}}  {helps.get(name, '')}".rstrip()
        for name, text in shown.items()
    ]
    if any(value is None for value in defaults.values()):
        lines.append("  (-: decided by the preset, the teacher/student pair or the other options)")
    return "\n".join(lines)


def _inline_options(kind: str, component: Component) -> str:
    """Temperature rules are few and small: their options on their line (``t=4.0``; ``-`` = from the preset)."""
    defaults = component.info.get("options")
    if kind != "temperature_rules" or not isinstance(defaults, dict) or not defaults:
        return ""
    shown = ", ".join(f"{name}={'-' if value is None else value}" for name, value in defaults.items())
    return f"\n    options: {shown}"


def _params(component: Component) -> str:
    count = component.info.get("params_100")
    return f"{count / 1e6:.3f}M" if isinstance(count, (int, float)) else ""


def _distiller_kind(component: Component) -> str:
    """``logit`` or ``feature``: what a distiller reads (info ``kind``, ``logit`` when unsaid)."""
    kind = component.info.get("kind")
    if kind is None and (component.info.get("features") or component.info.get("model_hooks")):
        kind = "feature"
    return str(kind or "logit")


def _reads(component: Component) -> str:
    """The features and model hooks a feature distiller reads, on a line of their own."""
    parts = [
        f"{label}: {', '.join(str(v) for v in values)}"
        for label, values in (
            ("reads", component.info.get("features") or []),
            ("model hooks", component.info.get("model_hooks") or []),
        )
        if values
    ]
    return f"\n    {'; '.join(parts)}" if parts else ""


@click.command("list")
@click.argument("kind")
@click.argument("pattern", required=False, default="*")
@options("json", "debug")
def list_(kind: str, pattern: str, json: bool | None, debug: bool | None) -> None:
    """Registered components of KIND matching PATTERN (shell wildcards, names and aliases).

    KIND is one of models, datasets, distillers, temperature-rules, augmentations,
    trackers, executors, commands.
    Model parameter counts are for 100 classes. When one component matches,
    its options are listed with their defaults.

    \b
    Example:
      ekd list models 'resnet*'
      ekd list augmentations
      ekd list distillers energy_kd     # its options and defaults
      ekd list temperature-rules        # fixed, energy, gradation, with their options
    """
    key = _KIND_ALIASES.get(kind.lower())
    if key is None:
        raise UsageError(
            f"unknown kind {kind!r}.{did_you_mean(kind, KINDS)} Choose one of {', '.join(k.replace('_', '-') for k in KINDS)}."
        )
    found = get_plugins().registries[key].list(pattern)
    if not found and not json:
        raise UsageError(f"no {key} match {pattern!r}; run 'ekd list {key}' to see all.")
    rows = []
    for c in found:
        aliases = f" (aka {', '.join(c.aliases)})" if c.aliases else ""
        extra = _params(c) if key == "models" else ""
        inline = _inline_options(key, c) if len(found) > 1 else ""  # one match: its full table below
        if key == "distillers":
            extra, inline = _distiller_kind(c), inline + _reads(c)
        rows.append((c.name, extra, f"{c.description}{aliases}  [{c.plugin}]{inline}"))
    width = max((len(r[0]) for r in rows), default=0)
    text = "\n".join(
        f"{name:<{width}}  {extra:>8}  {desc}"
        if key == "models"
        else f"{name:<{width}}  {extra:<7}  {desc}"
        if key == "distillers"
        else f"{name:<{width}}  {desc}"
        for name, extra, desc in rows
    )
    if len(found) == 1 and (options_text := _options_text(key, found[0])):
        text += "\n" + options_text
    Console(json_mode=bool(json)).result([_describe(c) for c in found], text)

"""How a temperature-based distiller gets its rule (docs/plugins.md#temperature-rules).

``ekd distill`` builds the rule named by ``--temperature-rule`` (else the distiller's default,
``info["temperature_rule"]``) from the ``[temperature]`` options and passes it to the
distiller's factory as ``temperature_rule=``.  A factory called from Python without one builds
its default rule from those of its options that the rule takes (``make_kd(t=3)``), so one
factory serves both.  No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ekdcli.util.errors import UsageError

if TYPE_CHECKING:
    from ekdcli.sdk.contracts import TemperatureRule

# Options a distiller and its rule may both read (the teacher/student pair: DKD's beta, the
# released energy rates).
SHARED_OPTIONS = ("pair",)


def _options_of(rule_name: str) -> set[str]:
    """The options a registered rule takes (from its ``info``, without building it); none if unknown."""
    from ekdcli.sdk.plugins import registry

    rules = registry("temperature_rules")
    return set(rules.get(rule_name).info.get("options", {})) if rule_name in rules else set()


def route_rule_options(
    options: Mapping[str, Any], rule: str, default: str
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Split a distiller's ``options`` between temperature rule ``rule`` and the distiller: the one
    routing pass that both the core (``ekd distill``) and the factories use.

    Returns ``(for the rule, the distiller's own, strays)``: the given options ``rule`` takes; the
    options no rule claims (and the shared ``pair``); the given options that only the distiller's
    ``default`` rule takes (they belong to a rule that is not used).
    """
    takes, default_takes, shared = _options_of(rule), _options_of(default), set(SHARED_OPTIONS)
    for_rule = {k: v for k, v in options.items() if k in takes and v is not None}
    strays = sorted(k for k, v in options.items() if k in default_takes - takes - shared and v is not None)
    own = {k: v for k, v in options.items() if k not in takes | default_takes or k in shared}
    return for_rule, own, strays


def split_rule_options(
    who: str, rule: TemperatureRule | None, default: str, options: Mapping[str, Any]
) -> tuple[TemperatureRule, dict[str, Any]]:
    """``(rule, the distiller's own options)`` for a factory's keyword ``options``.

    Without ``rule`` the ``default`` rule is built from the options it takes (``make_kd(t=3)``).
    A ``rule`` given by the core is used as it is; then an option of that rule or of the default
    one among ``options`` is an error (it would be silently ignored).  ``pair`` reaches both.
    """
    from ekdcli.sdk.plugins import registry

    if rule is None:
        for_rule, own, _ = route_rule_options(options, default, default)
        return registry("temperature_rules").get(default).build(**for_rule), own
    for_rule, own, strays = route_rule_options(options, rule.name, default)
    stray = sorted((set(for_rule) - set(SHARED_OPTIONS)) | set(strays))
    if stray:
        raise UsageError(
            f"{who} got {', '.join(repr(k) for k in stray)} beside its temperature rule "
            f"{rule.name!r}; give the rule's options to the rule (the [temperature] table) instead."
        )
    return rule, own

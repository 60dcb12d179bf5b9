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


def rule_option_names(rule_name: str) -> set[str]:
    """The options the registered rule ``rule_name`` takes (from its ``info``, without building it)."""
    from ekdcli.sdk.plugins import registry

    return set(registry("temperature_rules").get(rule_name).info.get("options", {}))


def split_rule_options(
    who: str, rule: TemperatureRule | None, default: str, options: Mapping[str, Any]
) -> tuple[TemperatureRule, dict[str, Any]]:
    """``(rule, the distiller's own options)`` for a factory's keyword ``options``.

    ``rule`` (given by the core) is used as it is, and then no rule option may come with the
    distiller's options; without it the ``default`` rule is built from the options it takes.
    ``pair`` reaches both.
    """
    from ekdcli.sdk.plugins import registry

    rules = registry("temperature_rules")
    name = default if rule is None else rule.name
    component = rules.get(name) if rule is None or name in rules else None
    takes = set(component.info.get("options", {})) if component is not None else set()
    own = {k: v for k, v in options.items() if k not in takes or k in SHARED_OPTIONS}
    for_rule = {k: v for k, v in options.items() if k in takes and v is not None}
    if rule is not None or component is None:
        assert rule is not None
        stray = sorted(k for k in for_rule if k not in SHARED_OPTIONS)
        if stray:
            raise UsageError(
                f"{who} got {', '.join(repr(k) for k in stray)} beside its temperature rule "
                f"{rule.name!r}; give them to the rule (the [temperature] table) instead."
            )
        return rule, own
    return component.build(**for_rule), own

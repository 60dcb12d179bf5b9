"""The plan of a distillation: which distiller, temperature rule and augmentation, and which
options reach each of them (docs/method.md#rates-on-the-command-line); then the built losses.

Names, registry info and options only: no data, no model, no torch until :func:`build_losses`
builds the planned components.  ``ekd distill``, the benches and the campaign planner share it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ekdcli.config import Config, foreign_note, naming_origin, split_foreign_options
from ekdcli.sdk.options import augmentation_rate, both_sides_rate
from ekdcli.sdk.plugins import Component, registry
from ekdcli.sdk.temperature import route_rule_options
from ekdcli.util.errors import UsageError, did_you_mean


@dataclass
class Plan:
    """What a distillation run will do, resolved and validated before anything is loaded."""

    distiller: Component
    distiller_options: dict[str, Any]
    augmentation: Component | None
    augmentation_options: dict[str, Any]
    rates_note: str
    notes: list[str] = dataclasses.field(default_factory=list)  # options a project file set for other methods
    rule: Component | None = None  # the temperature rule of a temperature-based distiller
    rule_options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def needs_energy(self) -> bool:
        """Whether the run reads the teacher's score file (an energy rule or an energy augmentation):
        the one source of that decision, from the components' registry info (no build needed)."""
        return any(c is not None and self.needs_energy_of(c) for c in (self.rule, self.augmentation))

    @staticmethod
    def needs_energy_of(component: Component) -> bool:
        return bool(component.info.get("needs_energy"))


def plan_methods(config: Config) -> Plan:
    """Choose components and route the options between them (docs/method.md#rates-on-the-command-line).

    A temperature-based distiller gets the rule of ``--temperature-rule`` (else its own default)
    with the ``[temperature]`` options; a rule that reads energies also gets ``[energy]`` and
    the energy flags.  ``--rate`` goes to the augmentation when there is one that takes a rate
    (the energy fraction of HE-DA, the random fraction of plain CutMix/MixUp), else to both
    temperature rates of an energy rule; ``--low-rate``/``--high-rate`` always to the rule.
    """
    distiller = _distiller(config.method)
    augmentation = _augmentation(config, distiller)
    plan = Plan(distiller, {}, augmentation, {}, "")
    plan.distiller_options = _own_options(config, "distiller", distiller, plan)
    if augmentation is not None:
        plan.augmentation_options = _own_options(config, "augmentation", augmentation, plan)
    elif config.augmentation:
        _not_for_this_method(
            config,
            "augmentation",
            "the [augmentation] options apply to an augmentation and none is chosen (--augment)",
            plan,
            target="a run without --augment",
        )
    plan.rule = _temperature_rule(config, distiller)
    energy_rule = plan.rule is not None and plan.needs_energy_of(plan.rule)
    energy_aug = augmentation is not None and plan.needs_energy_of(augmentation)
    if energy_rule:
        plan.rule_options.update(config.energy)
        plan.rule_options.setdefault("energy_temperature", config.energy_temperature)
    elif config.energy and not energy_aug:
        rule = plan.rule.name if plan.rule is not None else "none"
        _not_for_this_method(
            config,
            "energy",
            f"the [energy] options apply to energy temperature rules; method {distiller.name!r} with "
            f"temperature rule {rule!r} does not use them",
            plan,
        )
    if config.sources.get("energy_temperature") == "flag" and not (energy_rule or energy_aug):
        raise UsageError(
            f"--energy-temperature applies to energy temperature rules and energy augmentations; method "
            f"{distiller.name!r} uses neither, so drop it or add one (--temperature-rule energy)."
        )
    _route_temperature_options(config, plan)
    if energy_aug and config.energy.get("low_rule"):
        plan.augmentation_options.setdefault("low_rule", config.energy["low_rule"])
    plan.rates_note = "; ".join(_route_rates(config, plan, energy_rule))
    return plan


def _augmentation(config: Config, distiller: Component) -> Component | None:
    """The ``--augment`` component, refused where the method cannot take one."""
    if not config.augment:
        return None
    augmentation = registry("augmentations").get(config.augment)
    if not distiller.info.get("needs_teacher", True):
        raise UsageError(
            f"augmentation {augmentation.name!r} needs a teacher (its mixed images get a KD term) but method "
            f"{distiller.name!r} trains without one; pick a distillation method such as kd or energy_kd."
        )
    if distiller.info.get("needs_strong_view"):
        raise UsageError(
            f"method {distiller.name!r} augments each batch itself (a strong second view); drop --augment "
            f"{augmentation.name} or pick another method."
        )
    return augmentation


def _temperature_rule(config: Config, distiller: Component) -> Component | None:
    """The rule of a temperature-based distiller: ``--temperature-rule``, else its default."""
    default = distiller.info.get("temperature_rule")
    if config.temperature_rule is None:
        return registry("temperature_rules").get(default) if default else None
    if not default:
        raise UsageError(
            f"method {distiller.name!r} does not use a temperature; drop --temperature-rule or pick a "
            "temperature-based method (kd, dkd, mlkd, ctkd)."
        )
    return registry("temperature_rules").get(config.temperature_rule)


def _route_temperature_options(config: Config, plan: Plan) -> None:
    """``[temperature]`` to the rule, with the keys of ``[distiller]`` that belong to a rule (kd's ``t``)."""
    rule = plan.rule
    if rule is None:
        if config.temperature:
            _not_for_this_method(
                config, "temperature", f"method {plan.distiller.name!r} does not use a temperature rule", plan
            )
        return
    default = plan.distiller.info["temperature_rule"]
    for_rule, plan.distiller_options, strays = route_rule_options(plan.distiller_options, rule.name, default)
    plan.rule_options.update(for_rule)
    for key in strays:  # the method's default rule has it, the chosen one does not
        _not_for_this_method(
            config,
            "distiller",
            f"[distiller] {key} belongs to the {default!r} temperature rule, not to {rule.name!r}",
            plan,
            subject=f"[distiller] {key} (of the {default} rule)",
        )
    plan.rule_options.update(config.temperature)


def _own_options(config: Config, table: str, component: Component, plan: Plan) -> dict[str, Any]:
    """The ``[table]`` options ``component`` takes; a project file's options for the other
    components of its kind are left out with a note."""
    declared = component.info.get("options")
    others = registry(component.kind).list()
    known = {key for c in others if c is not component for key in (c.info.get("options") or {})}
    accepted = list(declared) if isinstance(declared, dict) else None
    kept, dropped = split_foreign_options(config, table, getattr(config, table), accepted, known)
    if dropped:
        plan.notes.append(foreign_note(config, table, dropped, f"{component.noun} {component.name!r}"))
    return kept


def _not_for_this_method(
    config: Config,
    table: str,
    problem: str,
    plan: Plan,
    subject: str | None = None,
    target: str | None = None,
) -> None:
    """Options this method does not use: an error when given now (flag, --set), a note when a
    project file sets them for the other methods it serves."""
    source = config.sources.get(table, "default")
    if source in ("flag", "default"):
        raise UsageError(f"{problem}; drop them or pick a method that uses them.")
    where = target or f"method {plan.distiller.name!r}"
    plan.notes.append(f"note: {subject or f'[{table}]'} in {source} does not apply to {where}; ignored.")


def _route_rates(config: Config, plan: Plan, energy_rule: bool) -> list[str]:
    """Send ``--rate``, ``--low-rate`` and ``--high-rate`` where they belong; what was set, for the header."""
    notes = []
    rate = config.rate
    aug = plan.augmentation
    if rate is not None and aug is not None and "rate" in aug.info.get("options", {}):
        # the one rule of each rate (sdk/options.py), checked before anything is loaded
        plan.augmentation_options["rate"] = augmentation_rate("", "--rate", rate)
        source = config.sources.get("rate", "default")
        origin = {"flag": "--rate", "default": "rate"}.get(source, f"rate in {source}")
        notes.append(f"augmentation rate {rate} ({origin})")
    elif rate is not None:
        if not energy_rule:
            raise UsageError(
                f"--rate selects energy sets, but neither the temperature rule of method "
                f"{plan.distiller.name!r} nor augmentation {config.augment or 'none'!r} uses energies; drop "
                "--rate or use an energy rule (--temperature-rule energy)."
            )
        both = both_sides_rate("", "--rate", rate)
        plan.rule_options["low_rate"] = plan.rule_options["high_rate"] = both
    for side in ("low_rate", "high_rate"):
        value = getattr(config, side)
        if value is not None:
            if not energy_rule:
                raise UsageError(
                    f"--{side.replace('_', '-')} applies to the energy temperature rule only "
                    "(--temperature-rule energy)."
                )
            plan.rule_options[side] = value
    options = plan.rule_options
    if energy_rule and ("low_rate" in options or "high_rate" in options):
        notes.append(f"temperature rates low {options.get('low_rate')} / high {options.get('high_rate')}")
    return notes


def _distiller(method: str) -> Component:
    """The registered distiller of ``--method``; an unknown name lists the valid ones."""
    distillers = registry("distillers")
    if method not in distillers:
        names = distillers.names()
        raise UsageError(
            f"unknown method {method!r}; valid methods are: {', '.join(names)}.{did_you_mean(method, names)}"
        )
    return distillers.get(method)


def build_losses(
    config: Config,
    plan: Plan,
    pair: tuple[str, str],
    *,
    num_classes: int | None = None,
    augmentation_options: dict[str, Any] | None = None,
) -> tuple[Any, Any]:
    """The planned distiller (with its temperature rule) and augmentation (None without one).

    ``pair`` (teacher, student names) gives the per-pair defaults (DKD beta, energy rates),
    ``num_classes`` reaches a distiller that asks for it (CTKD's instance variant);
    ``augmentation_options`` override the planned ones.  A bad option names the config file that set it.
    """
    distiller_options = dict(plan.distiller_options)
    if "pair" in plan.distiller.info.get("options", {}):
        distiller_options.setdefault("pair", pair)
    if num_classes is not None and plan.distiller.info.get("needs_num_classes"):
        distiller_options["num_classes"] = num_classes
    with naming_origin(config, "distiller", "temperature", "energy", "augmentation"):
        if plan.rule is not None:
            rule_options = dict(plan.rule_options)
            if "pair" in plan.rule.info.get("options", {}):
                rule_options.setdefault("pair", pair)
            distiller_options["temperature_rule"] = plan.rule.build(**rule_options)
        distiller = plan.distiller.build(**distiller_options)
        augmentation = (
            plan.augmentation.build(**{**plan.augmentation_options, **(augmentation_options or {})})
            if plan.augmentation is not None
            else None
        )
    return distiller, augmentation

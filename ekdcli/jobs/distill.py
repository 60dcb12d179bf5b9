"""``ekd distill``: train a student from a teacher with a distiller and an optional augmentation."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.config import (
    DEFAULT_DATA,
    DEFAULT_PAIR,
    Config,
    foreign_note,
    naming_origin,
    split_foreign_options,
)
from ekdcli.jobs.build import (
    TrainedModel,
    build_model,
    canonical_model,
    dataset_key,
    is_registered_model,
    load_dataset,
    load_trained,
    weights_metadata,
)
from ekdcli.jobs.common import (
    console,
    describe_data,
    describe_recipe,
    engine_options,
    hold_run,
    open_store,
    recorded_config,
    resolve_recipe,
)
from ekdcli.jobs.console import Console
from ekdcli.jobs.provenance import say_teacher
from ekdcli.jobs.record import build_trackers, recorded, run_record
from ekdcli.sdk.plugins import Component, registry
from ekdcli.util.errors import UsageError, did_you_mean

if TYPE_CHECKING:
    import torch

    from ekdcli.engine import Recipe, Runtime
    from ekdcli.sdk.contracts import Augmentation, Dataset, Distiller, EnergyContext, Tracker

DEFAULT_TEACHER_EPOCHS = 30


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
        """Whether the run reads the teacher's score file (an energy rule or an energy augmentation)."""
        return any(c is not None and c.info.get("needs_energy") for c in (self.rule, self.augmentation))


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
    energy_rule = bool(plan.rule is not None and plan.rule.info.get("needs_energy"))
    energy_aug = bool(augmentation is not None and augmentation.info.get("needs_energy"))
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
    takes = set(rule.info.get("options", {}))
    default = registry("temperature_rules").get(plan.distiller.info["temperature_rule"])
    for key in sorted(
        (set(plan.distiller_options) & (takes | set(default.info.get("options", {})))) - {"pair"}
    ):
        value = plan.distiller_options.pop(key)
        if key in takes:
            plan.rule_options[key] = value
        else:  # the method's default rule has it, the chosen one does not
            _not_for_this_method(
                config,
                "distiller",
                f"[distiller] {key} belongs to the {default.name!r} temperature rule, not to {rule.name!r}",
                plan,
                subject=f"[distiller] {key} (of the {default.name} rule)",
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
    if rate is not None and not 0 < rate <= 1:
        raise UsageError(f"--rate must be in (0, 1], not {rate}.")
    if rate is not None and aug is not None and "rate" in aug.info.get("options", {}):
        plan.augmentation_options["rate"] = rate
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
        plan.rule_options["low_rate"] = plan.rule_options["high_rate"] = rate
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


def check_student_name(name: str) -> None:
    """Refuse a student that is neither a registered model nor an existing weights file, before any work."""
    if name.endswith(".safetensors"):
        if not Path(name).is_file():
            raise UsageError(f"no student weights file at {name}; check the --student path.")
        return
    canonical_model(name)


def resolve_pair(config: Config) -> tuple[str, str, bool]:
    """Teacher and student names; the default pair only on the embedded data, said out loud."""
    if config.teacher and config.student:
        return config.teacher, config.student, False
    if registry("datasets").get(config.data).name == registry("datasets").get(DEFAULT_DATA).name:
        return config.teacher or DEFAULT_PAIR[0], config.student or DEFAULT_PAIR[1], True
    missing = " and ".join(f"--{r}" for r in ("teacher", "student") if not getattr(config, r))
    raise UsageError(f"say which models to use with {missing} (or name them in ekd.toml).")


def load_teacher(config: Config, name: str, dataset: Any, data_key: str, defaulted: bool) -> TrainedModel:
    """The trained teacher from the store (or a .safetensors path); the default pair's teacher is
    trained first when the store has none."""
    store = open_store(config)
    canonical = canonical_model(name) if is_registered_model(name) else None
    if defaulted and store.find_weights(name, data_key, canonical) is None:
        from ekdcli.jobs.train import run_train

        epochs = config.epochs or DEFAULT_TEACHER_EPOCHS
        console(config).say(
            f"no trained {name} teacher for {data_key} in {store.root}: training it first "
            f"({epochs} epoch{'s' if epochs != 1 else ''}, ekd train --model {name})"
        )
        teacher_config = dataclasses.replace(config, model=name, run_name=None, epochs=epochs)
        run_train(teacher_config)
    return load_trained(name, dataset, data_key, store, "teacher")


def load_student(config: Config, name: str, dataset: Any, data_key: str) -> tuple[Any, str]:
    """A freshly built student and its architecture, or one starting from a .safetensors file."""
    if name.endswith(".safetensors"):
        trained = load_trained(name, dataset, data_key, open_store(config), "student")
        return trained.model, trained.arch
    arch = canonical_model(name)
    return build_model(arch, dataset.num_classes, dataset.in_channels), arch


def open_teacher_cache(
    config: Config, dataset: Any, data_key: str, teacher: TrainedModel, precision: str, say: Any
) -> Any:
    """The store's teacher cache for this teacher and dataset (None, said out loud, for folder data)."""
    from ekdcli.method.teacher_cache import TeacherCache, build_key
    from ekdcli.sdk.contracts import InMemoryDataset
    from ekdcli.store.weights import weights_sha256

    if not isinstance(dataset, InMemoryDataset):
        say.say("  teacher cache: off (it applies to in-memory datasets only; this one is read from folders)")
        return None
    dtype = config.teacher_cache_dtype  # "auto": float32 for fp32 teachers (exact)
    key = build_key(dataset, weights_sha256(teacher.path), precision, dtype)
    path = open_store(config).cache_path(data_key, teacher.arch)
    return TeacherCache.open(path, key, say=lambda message: say.say(f"  {message}"))


@dataclass
class Prepared:
    """Everything a distillation needs, loaded once: by ``ekd distill`` and by both benches."""

    plan: Plan
    pair: tuple[str, str]  # teacher and student as named (per-pair loss defaults)
    distiller: Distiller
    augmentation: Augmentation | None
    dataset: Dataset
    data_key: str
    recipe: Recipe
    teacher: TrainedModel | None
    runtime: Runtime
    student: torch.nn.Module
    student_arch: str
    energy: EnergyContext | None


def prepare(config: Config) -> Prepared:
    """Plan, check, then load: bad names and options fail before any data, model or file is touched
    (and before torch is imported)."""
    say = console(config)
    plan = plan_methods(config)
    for note in plan.notes:
        say.say(note)
    teacher_name, student_name, defaulted = resolve_pair(config)
    check_student_name(student_name)  # before a default teacher is trained or anything is scored
    data_key = dataset_key(config)
    from ekdcli.engine import Runtime

    distiller, augmentation = build_losses(config, plan, (teacher_name, student_name))
    dataset = load_dataset(config)
    check_strong_view(distiller, dataset, data_key)
    recipe = resolve_recipe(config, dataset, student_name)
    if defaulted:
        say.say(
            f"no teacher/student configured: using the default pair {teacher_name} -> {student_name} on {data_key}"
        )
    teacher = (
        load_teacher(config, teacher_name, dataset, data_key, defaulted) if distiller.needs_teacher else None
    )
    # The runtime before the student: it seeds the student's init (as in ekd train), and the
    # teacher cache is keyed by its resolved precision.
    runtime = Runtime(engine_options(config))
    student, student_arch = load_student(config, student_name, dataset, data_key)
    if plan.distiller.info.get("needs_num_classes"):  # built again now that the classes are known
        distiller, _ = build_losses(
            config, plan, (teacher_name, student_name), num_classes=dataset.num_classes
        )
    needs_energy = distiller.needs_energy or bool(augmentation is not None and augmentation.needs_energy)
    energy = energy_context(config, dataset, data_key, teacher) if needs_energy and teacher else None
    return Prepared(
        plan, (teacher_name, student_name), distiller, augmentation, dataset, data_key, recipe,
        teacher, runtime, student, student_arch, energy,
    )  # fmt: skip


def check_strong_view(distiller: Distiller, dataset: Dataset, data_key: str) -> None:
    """A strong view is drawn on the device from the uint8 images: in-memory datasets only."""
    from ekdcli.sdk.contracts import InMemoryDataset

    if distiller.needs_strong_view and not isinstance(dataset, InMemoryDataset):
        raise UsageError(
            f"method {distiller.name!r} draws a strong second view of each batch on the device, which needs "
            f"an in-memory dataset; {data_key} is read from folders."
        )


def energy_context(config: Config, dataset: Dataset, data_key: str, teacher: TrainedModel) -> EnergyContext:
    """The teacher's energies of the training set, scoring it first when the store has none."""
    from ekdcli.jobs.score import ensure_scores
    from ekdcli.sdk.contracts import EnergyContext

    scored = ensure_scores(config, dataset, data_key, teacher)
    if scored.computed:
        console(config).say(f"scored the training set with the teacher first: {scored.path}")
    table = scored.table
    return EnergyContext(table.energies.float(), table.meta.energy_temperature, table.meta.fingerprint)


@recorded
def run_distill(config: Config, resume: Path | None = None) -> dict[str, Any]:
    """Check the run target, prepare (teacher, scores), claim the run directory, distill."""
    store = open_store(config)
    store.check_run_target(config.run_name, resume)  # before a teacher is trained or scored
    trackers = build_trackers(config)  # an unknown tracker or a missing package: before any work too
    job = prepare(config)
    plan = job.plan
    prefix = f"distill-{plan.distiller.name}" + (f"-{plan.augmentation.name}" if plan.augmentation else "")
    with contextlib.ExitStack() as held:
        run_dir = hold_run(held, store, config.run_name, prefix, resume)
        return _distill(config, job, run_dir, resume is not None, trackers)


def _distill(
    config: Config, job: Prepared, run_dir: Path, resumed: bool, trackers: list[tuple[str, Tracker]]
) -> dict[str, Any]:
    from ekdcli.engine import fit
    from ekdcli.method.objective import DistillObjective

    say = console(config)
    teacher, runtime, plan = job.teacher, job.runtime, job.plan
    cache = None
    if config.teacher_cache and teacher is not None:
        cache = open_teacher_cache(config, job.dataset, job.data_key, teacher, runtime.precision, say)
    objective = DistillObjective(
        teacher.model if teacher else None, job.distiller, job.augmentation, job.energy, teacher_cache=cache
    )
    _print_header(say, config, job, run_dir)
    with run_record(config, runtime, run_dir, trackers, "distill") as tracking:
        result = fit(
            job.student,
            job.dataset,
            objective,
            job.recipe,
            runtime.options,
            run_dir,
            config_text=recorded_config(config, open_store(config)).to_toml(),
            metadata=_student_metadata(job),
            resume=resumed,
            runtime=runtime,
            tracking=tracking,
        )
        if cache is not None:
            _report_cache(say, cache, runtime)
        described = objective.describe()
        _report_rule(say, described["distiller"])
        say.say(
            f"done: best top-1 {100 * result.best_top1:.2f}% (epoch {result.best_epoch}), last top-1 "
            f"{100 * result.last_top1:.2f}% / top-5 {100 * result.last_top5:.2f}%"
        )
    return {
        "run_dir": str(run_dir),
        "method": plan.distiller.name,
        "temperature_rule": plan.rule.name if plan.rule else None,
        "augment": plan.augmentation.name if plan.augmentation else None,
        "teacher": teacher.arch if teacher else None,
        "student": job.student_arch,
        "data": job.data_key,
        "best_top1": result.best_top1,
        "best_top5": result.best_top5,
        "best_epoch": result.best_epoch,
        "last_top1": result.last_top1,
        "last_top5": result.last_top5,
        "objective": described,
    }


def _student_metadata(job: Prepared) -> dict[str, Any]:
    return weights_metadata(
        job.student_arch,
        job.dataset,
        job.data_key,
        "ekd distill",
        method=job.plan.distiller.name,
        augment=job.plan.augmentation.name if job.plan.augmentation else None,
        teacher=job.teacher.arch if job.teacher else None,
    )


def _print_header(say: Console, config: Config, job: Prepared, run_dir: Path) -> None:
    """A few short lines: what is trained, from what, with which rule and recipe, where it goes;
    ``--verbose`` adds every setting of the loss and the augmentation."""
    plan = job.plan
    name = plan.distiller.name + (f" + {plan.augmentation.name}" if plan.augmentation else "")
    teacher = job.teacher.arch if job.teacher else "no teacher"
    data = describe_data(config, job.dataset, job.data_key)
    if plan.rule is not None and plan.rule.name != plan.distiller.info.get("temperature_rule"):
        name += f" (temperature rule {plan.rule.name})"  # another rule than the method's own
    say.say(f"ekd distill: {name}, {teacher} -> {job.student_arch} on {data}")
    if job.teacher is not None:
        say_teacher(say, job.teacher.path, job.teacher.metadata)
    rule = loss_summary(job.distiller.describe())
    if job.augmentation is not None:
        rule += f"; {augmentation_summary(job.augmentation.describe())}"
    say.say(f"  rule: {rule}")
    if plan.rates_note:
        say.say(f"  rates: {plan.rates_note}")
    if config.verbose:
        say.say(f"  loss: {_one_line(job.distiller.describe())}")
        if job.augmentation is not None:
            say.say(f"  augmentation: {_one_line(job.augmentation.describe())}")
    say.say(f"  recipe: {describe_recipe(job.recipe)}")
    say.say(f"  run directory: {run_dir}")


def loss_summary(described: dict[str, Any]) -> str:
    """The distiller's rule in a few words (``--verbose`` prints every key)."""
    temps = described.get("temperatures")
    if isinstance(temps, dict):  # an energy partition rule
        t = " / ".join(f"{v:g}" for v in temps.values())
        rates = f"rates {described.get('low_rate'):g} / {described.get('high_rate'):g}"
        source = described.get("rate_source")
        rates += f" ({source})" if source not in (None, "default", "rate") else ""
        text = (
            f"{described.get('method')}, {described.get('preset')} preset: T {t} for low / other / high "
            f"energy, {rates}, {described.get('source')} energies, {described.get('low_rule')} low rule"
        )
    elif isinstance(temps, list):  # gradation over energy segments
        text = (
            f"{described.get('method')}, {described.get('preset')} preset: T {temps[0]:g} .. {temps[-1]:g} "
            f"over {described.get('segments')} energy segments, {described.get('source')} energies"
        )
    else:
        weights = ", ".join(f"{k} {described[k]:g}" for k in ("t", "alpha", "beta") if k in described)
        text = f"{described.get('method', 'loss')}" + (f" ({weights})" if weights else "")
    return text + (", standardized logits" if described.get("logit_standardize") else "")


def augmentation_summary(described: dict[str, Any]) -> str:
    """An augmentation's rule in a few words: what it mixes, which samples, how."""
    rate, selection = described.get("rate"), described.get("selection")
    share = f"{rate:.0%}" if isinstance(rate, (int, float)) else "?"
    chosen = {
        "high": f"the {share} highest-energy images",
        "low": f"the {share} lowest-energy images",
        "all": "every image",
        "random": f"a random {share} of the images",
    }.get(str(selection), f"{share} of the images")
    mode = described.get("mode")
    return f"{described.get('augment')}: {described.get('kind', 'mix')} of {chosen}" + (
        f" ({mode} mode)" if mode else ""
    )


def _report_cache(say: Console, cache: Any, runtime: Runtime) -> None:
    cache.flush()
    share = 100.0 * cache.hits / max(cache.hits + cache.misses, 1)
    where = " on rank 0" if runtime.world_size > 1 else ""
    if runtime.is_main:
        say.say(
            f"  teacher cache: {cache.hits} hits, {cache.misses} misses{where} ({share:.1f}% of clean "
            "views served without the teacher)"
        )


def _report_rule(say: Console, after: dict[str, Any]) -> None:
    """What setup added to the rule (the energy groups' sizes and thresholds), once; and groups that
    stayed empty."""
    counts = after.get("train_counts") or {}
    if counts:
        thresholds = after.get("thresholds") or {}
        bounds = ", ".join(
            f"E_{k} {thresholds[k]:.4g}"
            for k in ("low", "high")
            if isinstance(thresholds.get(k), (int, float))
        )
        sizes = " / ".join(f"{group} {n:,}" for group, n in counts.items())
        say.say(f"  energy groups of the training images: {sizes}" + (f" ({bounds})" if bounds else ""))
    empty = [group for group, n in counts.items() if n == 0]
    if empty:
        say.warn(
            f"no training sample fell in the {', '.join(empty)} energy group(s), so their temperature was "
            "never used; raise the rate (or lower --segments) to give them members."
        )


def _one_line(described: dict[str, Any]) -> str:
    """``key=value, ...`` of the set values; nested tables (temperatures, thresholds) inline."""
    return ", ".join(f"{k}={_compact(v)}" for k, v in described.items() if v is not None)


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + " ".join(f"{k}:{_compact(v)}" for k, v in value.items() if v is not None) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_compact(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)

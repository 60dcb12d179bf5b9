"""The preparation of a distillation: its plan checked, then the data, the teacher (trained first
for the default pair), the student, the teacher's energies (scored first when missing) and the
teacher cache, loaded once.  ``ekd distill``, ``ekd bench``, ``ekd bench-engine`` and the campaign
planner share it, instead of importing a sibling job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.config import DEFAULT_DATA, DEFAULT_PAIR, Config
from ekdcli.jobs.build import (
    TrainedModel,
    build_model,
    canonical_model,
    dataset_key,
    is_registered_model,
    load_dataset,
    load_trained,
)
from ekdcli.jobs.common import console, engine_options, open_store, resolve_recipe
from ekdcli.jobs.features import bind, check_feature_run
from ekdcli.jobs.plan import Plan, build_losses, plan_methods
from ekdcli.sdk.contracts import EnergyContext, InMemoryDataset
from ekdcli.sdk.plugins import registry
from ekdcli.util.errors import PluginError, UsageError

if TYPE_CHECKING:
    import torch

    from ekdcli.engine import Recipe, Runtime
    from ekdcli.sdk.contracts import Augmentation, Dataset, Distiller


DEFAULT_TEACHER_EPOCHS = 30


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
    check_feature_run(config, plan.distiller, {"student": student_name, "teacher": teacher_name})
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
    bind(config, plan.distiller, distiller, (student, student_arch), teacher, dataset, runtime.world_size)
    check_needs_energy(plan, distiller, augmentation)
    energy = energy_context(config, dataset, data_key, teacher) if plan.needs_energy and teacher else None
    return Prepared(
        plan, (teacher_name, student_name), distiller, augmentation, dataset, data_key, recipe,
        teacher, runtime, student, student_arch, energy,
    )  # fmt: skip


def check_needs_energy(plan: Plan, distiller: Distiller, augmentation: Augmentation | None) -> None:
    """Whether a run reads the score file has one source, the registry info its plan reads (so the
    campaign planner and the run agree); a built component that says otherwise is a plugin's bug."""
    for component, built in ((plan.rule, distiller), (plan.augmentation, augmentation)):
        if (
            component is not None
            and built is not None
            and bool(built.needs_energy) != plan.needs_energy_of(component)
        ):
            raise PluginError(
                f"plugin {component.plugin!r}: {component.noun} {component.name!r} says needs_energy="
                f"{bool(built.needs_energy)} but its registry info says {plan.needs_energy_of(component)}; "
                "fix the plugin's info['needs_energy']."
            )


def check_strong_view(distiller: Distiller, dataset: Dataset, data_key: str) -> None:
    """A strong view is drawn on the device from the uint8 images: in-memory datasets only."""

    if distiller.needs_strong_view and not isinstance(dataset, InMemoryDataset):
        raise UsageError(
            f"method {distiller.name!r} draws a strong second view of each batch on the device, which needs "
            f"an in-memory dataset; {data_key} is read from folders."
        )


def energy_context(config: Config, dataset: Dataset, data_key: str, teacher: TrainedModel) -> EnergyContext:
    """The teacher's energies of the training set, scoring it first when the store has none."""
    from ekdcli.jobs.score import ensure_scores

    scored = ensure_scores(config, dataset, data_key, teacher)
    if scored.computed:
        console(config).say(f"scored the training set with the teacher first: {scored.path}")
    table = scored.table
    return EnergyContext(table.energies.float(), table.meta.energy_temperature, table.meta.fingerprint)

"""``ekd train``: cross-entropy training of a model; its weights go to the store."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.config import Config, naming_origin
from ekdcli.jobs.build import build_model, canonical_model, dataset_key, load_dataset, weights_metadata
from ekdcli.jobs.common import (
    check_resume,
    console,
    describe_data,
    describe_recipe,
    engine_options,
    hold_run,
    open_store,
    recipe_name,
    recorded_config,
    replacing_note,
    resolve_recipe,
    store_file_lock,
)
from ekdcli.jobs.record import build_trackers, recorded, run_record
from ekdcli.sdk.plugins import registry
from ekdcli.store.layout import Store, safe_name
from ekdcli.store.weights import save_tensors
from ekdcli.util.errors import UsageError

if TYPE_CHECKING:
    import torch

    from ekdcli.engine import FitResult, Recipe, Runtime
    from ekdcli.sdk.contracts import Dataset, Tracker


@dataclass
class TrainResult:
    model_path: Path
    run_dir: Path
    summary: dict[str, Any]


@recorded
def run_train(
    config: Config, name: str | None = None, keep: str | None = None, resume: Path | None = None
) -> TrainResult:
    """Check everything that can be checked, claim the run directory and the store file, train.

    ``keep`` is ``best`` unless given; a resumed run stores its weights under the name and ``keep``
    of the command that started it (saved with its checkpoint).
    """
    target = check_train(config, name, keep, resume)
    weights_lock = store_file_lock(target.model_path, "wait for it to finish, or train with --name NAME")
    weights_lock.ensure_free()
    from ekdcli.engine import Runtime

    arch, data_key, store, resume = target.arch, target.data_key, target.store, target.resume
    dataset = load_dataset(config)
    recipe = resolve_recipe(config, dataset, arch)
    # The runtime first: it joins the process group under torchrun and seeds the model's init.
    runtime = Runtime(engine_options(config))
    with contextlib.ExitStack() as held:
        # Rank 0 names the run (a timestamped name could differ between ranks by a second).
        run_dir = hold_run(held, store, config.run_name, f"train-{arch}-{data_key}", resume, weights_lock)
        job = _TrainJob(
            config, arch, dataset, data_key, recipe, runtime, run_dir, target.model_path, target.trackers
        )
        return job.run(target.keep, target.store_name, resume is not None)


@dataclass
class TrainTarget:
    """What a checked ``ekd train`` command will train and where its weights go."""

    arch: str
    data_key: str
    store: Store
    resume: Path | None
    store_name: str
    model_path: Path
    keep: str
    trackers: list[tuple[str, Tracker]]


def check_train(
    config: Config, name: str | None = None, keep: str | None = None, resume: Path | None = None
) -> TrainTarget:
    """Every check of ``ekd train`` that needs no data or model (and no torch unless resuming)."""
    resume = resume.resolve() if resume else None
    if resume is not None:
        check_resume(config, resume)  # before anything else: a resume changes nothing of the experiment
    if not config.model:
        raise UsageError("say which architecture to train with --model (see 'ekd list models').")
    if keep not in (None, "best", "last"):
        raise UsageError(f"--keep must be 'best' or 'last', not {keep!r}.")
    if name is not None and not name.strip():
        raise UsageError("--name is empty; give the name to store the weights under, or leave --name out.")
    arch = canonical_model(config.model)
    check_energy_table(config)
    trackers = build_trackers(config)
    data_key = dataset_key(config)  # names are checked before torch is imported
    store = open_store(config)
    store.check_run_target(config.run_name, resume)
    if resume is not None:
        name, keep = _resumed_target(resume, name, keep)
    store_name = safe_name(name, "--name") if name else arch
    model_path = store.model_path(data_key, store_name)  # before any work
    return TrainTarget(arch, data_key, store, resume, store_name, model_path, keep or "best", trackers)


def check_energy_table(config: Config) -> None:
    """``ekd train`` uses no ``[energy]`` option, but the table it is given (from a project file
    shared with ekd distill, or a campaign's --set) must hold known keys and sane segments."""
    energy = config.energy
    if not energy:
        return
    known = set()
    for kind in ("temperature_rules", "augmentations"):
        for name in registry(kind).names():
            info = registry(kind).get(name).info
            if info.get("needs_energy"):
                known.update(info.get("options", {}))
    unknown = sorted(set(energy) - known)
    with naming_origin(config, "energy"):
        if unknown:
            raise UsageError(
                f"unknown option '{unknown[0]}' in [energy]; the energy options are {', '.join(sorted(known))}."
            )
        if energy.get("segments") is not None:
            from ekdcli.method.partition import check_segments

            check_segments(energy["segments"])


def _resumed_target(resume: Path, name: str | None, keep: str | None) -> tuple[str | None, str | None]:
    """The ``--name`` and ``--keep`` the run was started with; a different one given now is refused."""
    from ekdcli.engine.checkpoint import saved_metadata

    saved = saved_metadata(resume)
    given_name = safe_name(name, "--name") if name else None
    for option, given, started in (
        ("--name", given_name, saved.get("store_name")),
        ("--keep", keep, saved.get("keep")),
    ):
        if given is not None and started is not None and given != started:
            raise UsageError(
                f"the run was started with {option} {started}, so its weights are stored that way; resume "
                f"without {option} (or with {option} {started})."
            )
    return name or saved.get("store_name"), keep or saved.get("keep")


@dataclass
class _TrainJob:
    config: Config
    arch: str
    dataset: Dataset
    data_key: str
    recipe: Recipe
    runtime: Runtime
    run_dir: Path
    model_path: Path
    trackers: list[tuple[str, Tracker]]

    def run(self, keep: str, store_name: str, resumed: bool) -> TrainResult:
        from ekdcli.engine import CrossEntropyObjective, ddp, fit

        config, dataset, run_dir, model_path = self.config, self.dataset, self.run_dir, self.model_path
        out = console(config)
        model = build_model(self.arch, dataset.num_classes, dataset.in_channels)
        data = describe_data(config, dataset, self.data_key)
        out.say(f"ekd train: {self.arch} on {data}, {dataset.num_classes} classes")
        out.say(f"  recipe: {describe_recipe(self.recipe)}")
        out.say(f"  run directory: {run_dir}")
        metadata = weights_metadata(
            self.arch,
            dataset,
            self.data_key,
            "ekd train",
            recipe=self.recipe.__dict__,
            recipe_name=recipe_name(config, dataset),  # the provenance a teacher's check reads
        )
        metadata.update(store_name=store_name, keep=keep)  # a resume stores the weights the same way
        with run_record(config, self.runtime, run_dir, self.trackers, "train") as tracking:
            result = fit(
                model,
                dataset,
                CrossEntropyObjective(),
                self.recipe,
                self.runtime.options,
                run_dir,
                config_text=recorded_config(config, open_store(config)).to_toml(),
                metadata=metadata,
                resume=resumed,
                runtime=self.runtime,
                tracking=tracking,
            )
        if self.runtime.is_main:  # every rank holds the same weights; one writes them
            if model_path.is_file() and not resumed:
                out.say(f"{replacing_note(model_path)}; train with --name NAME to keep both")
            save_tensors(model_path, *_kept_weights(result, keep, metadata, run_dir))
        ddp.barrier()  # the other ranks may load these weights next (a teacher trained inside distill)
        out.say(
            f"done: best top-1 {100 * result.best_top1:.2f}% (epoch {result.best_epoch}), last "
            f"{100 * result.last_top1:.2f}%; {keep} weights saved to {model_path}"
        )
        summary = {
            "model": self.arch,
            "data": self.data_key,
            "weights": str(model_path),
            "run_dir": str(run_dir),
            "best_top1": result.best_top1,
            "best_epoch": result.best_epoch,
            "last_top1": result.last_top1,
            "kept": keep,
        }
        return TrainResult(model_path=model_path, run_dir=run_dir, summary=summary)


def _kept_weights(
    result: FitResult, keep: str, metadata: dict[str, Any], run_dir: Path
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The ``best`` or ``last`` weights of a run, with the metadata the store file records."""
    best = keep == "best"
    epochs_done = result.history[-1]["epoch"] if result.history else 0
    return (result.best_state if best else result.last_state), {
        **metadata,
        "top1": result.best_top1 if best else result.last_top1,
        "top5": result.best_top5 if best else result.last_top5,
        "epoch": result.best_epoch if best else epochs_done,
        "epochs": epochs_done,
        "kept": keep,
        "run_dir": str(run_dir),
    }

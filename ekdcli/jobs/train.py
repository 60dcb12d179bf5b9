"""``ekd train``: cross-entropy training of a model; its weights go to the store."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.config import Config
from ekdcli.jobs.build import build_model, canonical_model, dataset_key, load_dataset, weights_metadata
from ekdcli.jobs.common import (
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
from ekdcli.store.layout import safe_name
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
    config: Config, name: str | None = None, keep: str = "best", resume: Path | None = None
) -> TrainResult:
    """Check everything that can be checked, claim the run directory and the store file, train."""
    if not config.model:
        raise UsageError("say which architecture to train with --model (see 'ekd list models').")
    if keep not in ("best", "last"):
        raise UsageError(f"--keep must be 'best' or 'last', not {keep!r}.")
    arch = canonical_model(config.model)
    trackers = build_trackers(config)
    data_key = dataset_key(config)  # names are checked before torch is imported
    store = open_store(config)
    model_path = store.model_path(data_key, safe_name(name, "--name") if name else arch)  # before any work
    resume = resume.resolve() if resume else None
    store.check_run_target(config.run_name, resume)
    weights_lock = store_file_lock(model_path, "wait for it to finish, or train with --name NAME")
    weights_lock.ensure_free()
    from ekdcli.engine import Runtime

    dataset = load_dataset(config)
    recipe = resolve_recipe(config, dataset, arch)
    # The runtime first: it joins the process group under torchrun and seeds the model's init.
    runtime = Runtime(engine_options(config))
    with contextlib.ExitStack() as held:
        # Rank 0 names the run (a timestamped name could differ between ranks by a second).
        run_dir = hold_run(held, store, config.run_name, f"train-{arch}-{data_key}", resume, weights_lock)
        job = _TrainJob(config, arch, dataset, data_key, recipe, runtime, run_dir, model_path, trackers)
        return job.run(keep, resume is not None)


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

    def run(self, keep: str, resumed: bool) -> TrainResult:
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

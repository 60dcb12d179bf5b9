"""``ekd train``: cross-entropy training of a model; its weights go to the store."""

from __future__ import annotations

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
    open_store,
    recorded_config,
    replacing_note,
    resolve_recipe,
)
from ekdcli.store.weights import save_tensors

if TYPE_CHECKING:
    import torch

    from ekdcli.engine import FitResult
from ekdcli.util.errors import UsageError


@dataclass
class TrainResult:
    model_path: Path
    run_dir: Path
    summary: dict[str, Any]


def run_train(
    config: Config, name: str | None = None, keep: str = "best", resume: Path | None = None
) -> TrainResult:
    if not config.model:
        raise UsageError("say which architecture to train with --model (see 'ekd list models').")
    if keep not in ("best", "last"):
        raise UsageError(f"--keep must be 'best' or 'last', not {keep!r}.")
    out = console(config)
    arch = canonical_model(config.model)
    data_key = dataset_key(config)  # names are checked before torch is imported
    from ekdcli.engine import CrossEntropyObjective, Runtime, ddp, fit
    from ekdcli.engine.ddp import from_rank0

    dataset = load_dataset(config)
    recipe = resolve_recipe(config, dataset, arch)
    store = open_store(config)
    # The runtime first: it joins the process group under torchrun and seeds the model's init.
    runtime = Runtime(engine_options(config))
    # Rank 0 names the run (a timestamped name could differ between ranks by a second).
    run_dir = resume.resolve() if resume else None
    run_dir = run_dir or from_rank0(lambda: store.new_run_dir(config.run_name, f"train-{arch}-{data_key}"))
    model = build_model(arch, dataset.num_classes, dataset.in_channels)
    out.say(f"ekd train: {arch} on {describe_data(config, dataset, data_key)}, {dataset.num_classes} classes")
    out.say(f"  recipe: {describe_recipe(recipe)}")
    out.say(f"  run directory: {run_dir}")
    metadata = weights_metadata(arch, dataset, data_key, "ekd train", recipe=recipe.__dict__)
    result = fit(
        model,
        dataset,
        CrossEntropyObjective(),
        recipe,
        runtime.options,
        run_dir,
        config_text=recorded_config(config, store).to_toml(),
        metadata=metadata,
        resume=resume is not None,
        runtime=runtime,
    )
    model_path = store.model_path(data_key, name or arch)
    if runtime.is_main:  # every rank holds the same weights; one writes them
        if model_path.is_file() and not resume:
            out.say(replacing_note(model_path))
        save_tensors(model_path, *_kept_weights(result, keep, metadata, run_dir))
    ddp.barrier()  # the other ranks may load these weights next (a teacher trained inside distill)
    out.say(
        f"done: best top-1 {100 * result.best_top1:.2f}% (epoch {result.best_epoch}), last {100 * result.last_top1:.2f}%; "
        f"{keep} weights saved to {model_path}"
    )
    summary = {
        "model": arch,
        "data": data_key,
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

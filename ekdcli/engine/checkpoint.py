"""The resumable checkpoint, all of it: what it holds, how it is written, read and checked.

The payload is training state as plain tensors / numbers / lists / dicts: everything in it loads
with ``torch.load(weights_only=True)`` (no unpickling of code), and it is written atomically, so a
crash leaves the previous checkpoint in place.  :func:`make_payload` gathers it from a
:class:`Resumable` (the live modules and generators of a run) and its :class:`Progress`;
:func:`resume` checks that a run may continue with the current settings and puts it back.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ekdcli.engine import ddp
from ekdcli.engine.recipe import Recipe
from ekdcli.store.atomic import atomic_write
from ekdcli.store.importer import load_weights_only
from ekdcli.store.rundir import BEST, CHECKPOINT
from ekdcli.store.weights import load_tensors, non_finite, require_finite
from ekdcli.util.errors import UsageError

FORMAT_VERSION = 1
# Recipe fields that may change on resume; any other change would not continue the same run.
RESUMABLE_CHANGES = ("epochs", "eval_every")
# what resuming reads from a checkpoint
_REQUIRED = (
    "model", "optimizer", "scheduler", "scaler", "objective", "epoch", "step", "batches_done",
    "steps_per_epoch", "recipe", "best", "last", "history", "data_generator",
    "epoch_start_data_generator", "meters", "host_rng", "rank_rng",
)  # fmt: skip


def host_rng_state() -> dict[str, Any]:
    """Python and numpy global RNG states, in checkpoint-safe types."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = cast(
        "tuple[str, np.ndarray, int, int, float]", np.random.get_state()
    )
    return {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }


def set_host_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached"]))


def device_rng_state(aug_generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """This rank's torch RNG states: CPU default, CUDA default (if used) and the augmentation generator."""
    state = {"torch": torch.get_rng_state(), "augment": aug_generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_device_rng_state(
    state: dict[str, torch.Tensor], aug_generator: torch.Generator, device: torch.device
) -> None:
    torch.set_rng_state(state["torch"])
    aug_generator.set_state(state["augment"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def gather_rank_states(state: dict[str, torch.Tensor], device: torch.device) -> list[dict[str, torch.Tensor]]:
    """Every rank's RNG states (collective: all ranks call it). Each rank's states have equal sizes."""
    if not ddp.is_dist():
        return [state]
    names = sorted(state)
    flat = torch.cat([state[n].reshape(-1).to(torch.uint8) for n in names])
    backend_device = device if device.type == "cuda" else torch.device("cpu")
    parts = ddp.all_gather_tensors(flat.to(backend_device))
    out = []
    for part in parts:
        part = part.cpu()
        offset, rank_state = 0, {}
        for name in names:
            size = state[name].numel()
            rank_state[name] = part[offset : offset + size].clone()
            offset += size
        out.append(rank_state)
    return out


def save_checkpoint(run_dir: Path, payload: dict[str, Any]) -> Path:
    """Write the checkpoint atomically; refused (JobError) when a tensor in it is not finite."""
    path = run_dir / CHECKPOINT
    require_finite(payload, str(path))
    payload = {"format": FORMAT_VERSION, **payload}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise UsageError(f"no checkpoint at {path}; start the run without --resume.")
    fix = "start a new run instead of resuming this one"
    payload = load_weights_only(path, unreadable=fix, pickled=fix)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise UsageError(f"{path} was written by another version of ekd; start a new run.")
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise UsageError(f"{path} is damaged (it lacks {', '.join(missing)}); {fix}.")
    bad = non_finite(payload)  # ekd never saves one: a damaged or edited file, never a finished run
    if bad:
        raise UsageError(f"{path} is damaged (NaN or infinite values in {bad[0]}); {fix}.")
    return payload


def exists(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a checkpoint (a run that was started there)."""
    return (Path(run_dir) / CHECKPOINT).exists()


# ------------------------------------------------------------------ what a run saves and restores
@dataclass
class Progress:
    """How far a run got: everything the checkpoint needs besides module and RNG states."""

    epoch: int = 0  # last completed epoch
    step: int = 0  # optimizer steps so far
    batches_done: int = 0  # batches of epoch + 1 already trained (mid-epoch checkpoint)
    best_top1: float = -math.inf
    best_top5: float = 0.0
    best_epoch: int = 0
    last_top1: float = math.nan
    last_top5: float = math.nan
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Resumable:
    """The live parts of a run that a checkpoint saves and a resume loads back into."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any  # a GradScaler, or None
    objective: Any  # an engine Objective (state_dict / load_state_dict)
    data_generator: torch.Generator  # the train order, shared by all ranks
    aug_generator: torch.Generator  # this rank's augmentation generator
    device: torch.device
    rank: int = 0
    world_size: int = 1
    ema: Any = None  # the moving average of the weights ([train] ema), or None


@dataclass
class Resumed:
    """What a resume hands back to the loop besides the modules it loaded."""

    progress: Progress
    epoch_start_data_state: torch.Tensor | None = None  # set when resuming mid-epoch
    meters: dict[str, Any] | None = None  # the epoch's sums so far, when resuming mid-epoch
    best_state: dict[str, torch.Tensor] | None = None


def plain(value: Any) -> Any:
    """Tuples as lists, as TOML and the checkpoint keep them."""
    return list(value) if isinstance(value, tuple) else value


def recipe_record(recipe: Recipe) -> dict[str, Any]:
    return {k: plain(v) for k, v in asdict(recipe).items()}


def make_payload(
    parts: Resumable,
    progress: Progress,
    recipe: Recipe,
    steps_per_epoch: int,
    epoch_start_data_state: torch.Tensor | None,
    meters: dict[str, Any] | None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint of a run. Collective on all ranks (RNG states are gathered); rank 0 saves it.

    ``metadata`` is the job's record of the run (what its weights are stored as): a resume reads it
    back with :func:`saved_metadata` to finish the run as the original command would have.
    """
    rank_states = gather_rank_states(device_rng_state(parts.aug_generator, parts.device), parts.device)
    st = progress
    return {
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else {},
        "objective": parts.objective.state_dict(),
        "ema": parts.ema.state_dict() if parts.ema is not None else {},
        "epoch": st.epoch,
        "step": st.step,
        "batches_done": st.batches_done,
        "steps_per_epoch": steps_per_epoch,
        "world_size": parts.world_size,
        "recipe": recipe_record(recipe),
        "best": {"top1": st.best_top1, "top5": st.best_top5, "epoch": st.best_epoch},
        "last": {"top1": st.last_top1, "top5": st.last_top5},
        "history": st.history,
        "data_generator": parts.data_generator.get_state(),
        "epoch_start_data_generator": epoch_start_data_state
        if epoch_start_data_state is not None
        else torch.empty(0, dtype=torch.uint8),
        "meters": meters if meters is not None else {},
        "host_rng": host_rng_state(),
        "rank_rng": rank_states,
        "metadata": dict(metadata or {}),
    }


def saved_metadata(run_dir: Path) -> dict[str, Any]:
    """The job's metadata saved with the checkpoint of ``run_dir`` ({} for checkpoints from before it)."""
    metadata = load_checkpoint(run_dir).get("metadata", {})
    return metadata if isinstance(metadata, dict) else {}


def check_resumable(saved: dict[str, Any], recipe: Recipe, steps_per_epoch: int) -> None:
    """Refuse a resume whose recipe or steps per epoch differ from the saved run's."""
    current = asdict(recipe)
    changed = [
        key
        for key, value in saved["recipe"].items()
        if key not in RESUMABLE_CHANGES and plain(current.get(key)) != plain(value)
    ]
    if changed:
        raise UsageError(
            f"the run was started with other values of {', '.join(changed)}; resume with the original "
            "settings or start a new run."
        )
    _check_epochs(saved, recipe)
    if saved["steps_per_epoch"] != steps_per_epoch:
        raise UsageError(
            f"the run had {saved['steps_per_epoch']} steps per epoch and would now have {steps_per_epoch}; "
            "resume with the same data, --limit-train, batch size and number of processes."
        )


def _check_epochs(saved: dict[str, Any], recipe: Recipe) -> None:
    """More (or fewer) epochs continue the same run only where the learning rate of the epochs
    already trained stays the same, and not below the epochs already done."""
    before = saved["recipe"].get("epochs")
    if recipe.epochs == before:
        return
    if recipe.epochs < saved["epoch"]:
        raise UsageError(
            f"--epochs {recipe.epochs} is fewer than the {saved['epoch']} epochs the run has trained; "
            f"resume with --epochs {before} (or more)."
        )
    if recipe.schedule == "cosine":
        raise UsageError(
            f"--epochs cannot change on resume with the cosine schedule (its learning rate depends on the "
            f"number of epochs); resume with --epochs {before} or start a new run."
        )


def _progress(ckpt: dict[str, Any]) -> Progress:
    return Progress(
        epoch=ckpt["epoch"],
        step=ckpt["step"],
        batches_done=ckpt["batches_done"],
        best_top1=ckpt["best"]["top1"],
        best_top5=ckpt["best"]["top5"],
        best_epoch=ckpt["best"]["epoch"],
        last_top1=ckpt["last"]["top1"],
        last_top5=ckpt["last"]["top5"],
        history=list(ckpt["history"]),
    )


def resume(run_dir: Path, parts: Resumable, recipe: Recipe, steps_per_epoch: int) -> Resumed:
    """Load the checkpoint of ``run_dir`` into ``parts`` after checking the run may continue."""
    ckpt = load_checkpoint(run_dir)
    check_resumable(ckpt, recipe, steps_per_epoch)
    parts.model.load_state_dict(ckpt["model"])
    parts.optimizer.load_state_dict(ckpt["optimizer"])
    parts.scheduler.load_state_dict(ckpt["scheduler"])
    if parts.scaler is not None and ckpt["scaler"]:
        parts.scaler.load_state_dict(ckpt["scaler"])
    parts.objective.load_state_dict(ckpt["objective"])
    if parts.ema is not None and ckpt.get("ema"):
        parts.ema.load_state_dict(ckpt["ema"])
    resumed = Resumed(_progress(ckpt))
    parts.data_generator.set_state(ckpt["data_generator"])
    if resumed.progress.batches_done:
        resumed.epoch_start_data_state = ckpt["epoch_start_data_generator"]
        resumed.meters = ckpt["meters"]
    set_host_rng_state(ckpt["host_rng"])
    rank_states = ckpt["rank_rng"]
    if parts.rank < len(rank_states):
        set_device_rng_state(rank_states[parts.rank], parts.aug_generator, parts.device)
    best_file = Path(run_dir) / BEST
    if resumed.progress.best_epoch and best_file.is_file():
        resumed.best_state = load_tensors(best_file)[0]
    return resumed

"""The resumable checkpoint: training state as plain tensors / numbers / lists / dicts.

Everything in it loads with ``torch.load(weights_only=True)`` (no unpickling of code), and it is
written atomically, so a crash leaves the previous checkpoint in place.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ekdcli.engine import ddp
from ekdcli.store.atomic import atomic_write
from ekdcli.store.importer import load_weights_only
from ekdcli.store.weights import require_finite
from ekdcli.util.errors import UsageError

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1
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
    path = run_dir / CHECKPOINT_NAME
    require_finite(payload, str(path))
    payload = {"format": FORMAT_VERSION, **payload}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise UsageError(f"no checkpoint at {path}; start the run without --resume.")
    fix = "start a new run instead of resuming this one"
    payload = load_weights_only(path, unreadable=fix, pickled=fix)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise UsageError(f"{path} was written by another version of ekd; start a new run.")
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise UsageError(f"{path} is damaged (it lacks {', '.join(missing)}); {fix}.")
    return payload

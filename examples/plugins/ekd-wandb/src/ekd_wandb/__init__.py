"""ekd-wandb: registers the tracker ``wandb``.  ekd imports this on every start: no wandb here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ekdcli.sdk import hookimpl


@hookimpl
def register_trackers(register: Callable[..., Any]) -> None:
    register(
        "wandb",
        "ekd_wandb.tracker:WandbTracker",  # imported (with wandb) only when a run asks for it
        aliases=("weights-and-biases",),
        description="a Weights & Biases run: the config, metrics per epoch, the best weights as a model "
        "artifact (WANDB_MODE=offline works without an account)",
        info={"package": "wandb"},
    )

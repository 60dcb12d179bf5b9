"""``ekd train``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ekdcli.cli.options import COMMON, RUNTIME, TRAINING, build_config, options


@click.command("train")
@options("model", *COMMON, *TRAINING, *RUNTIME, "nproc")
@click.option("--name", help="Store the weights under this name instead of the architecture's.")
@click.option(
    "--keep",
    type=click.Choice(["best", "last"]),
    help="Which epoch's weights go to the store  [default: best; a resumed run keeps its own].",
)
@click.option(
    "--resume",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Continue a stopped run from its run directory.",
)
def train(name: str | None, keep: str | None, resume: Path | None, nproc: int | None, **params: Any) -> None:
    """Train a model with cross-entropy (teachers and student baselines).

    The weights are written to <store>/models/<data>/<model>.safetensors, where
    'ekd score' and 'ekd distill' find them by name, plus a run directory.

    \b
    Example:
      ekd train --model resnet32x4 --data cifar100 --data-root ../shared/data/cifar100.npz
      ekd train --model resnet8 --epochs 5          # embedded digits data
      ekd train --model resnet8 --nproc 2           # two data-parallel processes (torchrun)
    """
    from ekdcli.cli.launch import multiprocess

    config = build_config(params, resume=resume)  # bad options fail here, before any re-launch
    from ekdcli.jobs.train import check_train

    with multiprocess(nproc, check=lambda: check_train(config, name, keep, resume)):
        from ekdcli.jobs.train import run_train

        result = run_train(config, name=name, keep=keep, resume=resume)
        if config.json:
            from ekdcli.jobs.common import console

            console(config).result(result.summary)

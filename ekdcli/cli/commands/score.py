"""``ekd score``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ekdcli.cli.options import COMMON, FINITE, build_config, options


@click.command("score")
@options("teacher", "energy_temperature", *COMMON, "limit_train", "precision", "channels_last", "nproc")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Score file (default: in the store)."
)
@click.option("--force", is_flag=True, help="Recompute even if a matching score file exists.")
@click.option(
    "--save-logits/--no-save-logits",
    default=None,
    help="Keep the teacher's logits in the file (default: when small enough).",
)
@click.option(
    "--rate",
    type=FINITE,
    default=0.2,
    show_default=True,
    help="Fraction marked on the histogram and used for the low/high summary.",
)
def score(
    out: Path | None, force: bool, save_logits: bool | None, rate: float, nproc: int | None, **params: Any
) -> None:
    """Score every training sample with the teacher's energy E = -T_E * logsumexp(z / T_E).

    One deterministic pass of the frozen teacher (eval mode, no augmentation)
    over the training set. Saves energies, labels, predictions and confidences
    with the fingerprints of the teacher weights and the data to
    <store>/scores/<data>/<teacher>.safetensors, prints quantiles and how
    energy relates to confidence, and draws the histogram (the paper's Fig. 3a).

    \b
    Example:
      ekd score --teacher wrn40_2 --data cifar100
      ekd score --teacher runs/t/best.safetensors --data cifar100 --force
    """
    from ekdcli.cli.launch import multiprocess

    config = build_config(params)
    from ekdcli.jobs.score import check_score

    with multiprocess(nproc, check=lambda: check_score(config, out, rate)):
        from ekdcli.jobs.common import console
        from ekdcli.jobs.score import run_score

        result = run_score(config, out, force, save_logits, rate)
        console(config).result(result.as_dict())

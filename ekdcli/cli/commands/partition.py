"""``ekd partition``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ekdcli.cli.options import COMMON, build_config, options


@click.command("partition")
@options("teacher", "rate", "low_rate", "high_rate", *COMMON, "limit_train")
@click.option(
    "--scores",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Score file (default: the store's file for --teacher and --data).",
)
@click.option(
    "--segments", type=int, help="Split into N equal-count energy segments instead (temperature gradation)."
)
@click.option("--per-class", type=int, default=6, show_default=True, help="Images per row in the figure.")
@click.option(
    "--classes", "num_classes", type=int, default=4, show_default=True, help="Classes in the figures."
)
@click.option(
    "--figures/--no-figures", default=True, show_default=True, help="Draw the paper's Figures 3 and 4."
)
def partition(
    scores: Path | None, segments: int | None, per_class: int, num_classes: int, figures: bool, **params: Any
) -> None:
    """Split scored training data into low-energy, others and high-energy sets.

    Thresholds follow the authors' released indexing: E_low = E_sorted[floor(N*r)],
    E_high = E_sorted[N - floor(N*r) - 1]; a sample is low when E < E_low
    (set [energy] low_rule = "paper" for the paper's E <= E_low) and high
    when E > E_high. Writes the index sets beside the score file and draws
    the lowest/highest-energy images per class (Fig. 3) and the average
    sorted teacher prediction of each set (Fig. 4).

    \b
    Example:
      ekd partition --teacher wrn40_2 --data cifar100 --rate 0.3
      ekd partition --teacher wrn40_2 --data cifar100 --low-rate 0.1 --high-rate 0.4
      ekd partition --teacher wrn40_2 --data cifar100 --segments 10 --json
    """
    from ekdcli.jobs.common import console
    from ekdcli.jobs.partition import run_partition

    config = build_config(params)
    console(config).result(run_partition(config, scores, segments, per_class, num_classes, figures).as_dict())

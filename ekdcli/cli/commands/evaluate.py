"""``ekd evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ekdcli.cli.options import FINITE, build_config, options


@click.command("evaluate")
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
@click.option(
    "--split",
    type=click.Choice(["test", "train"]),
    default="test",
    show_default=True,
    help="Split to measure top-1/top-5, NLL and calibration on (no augmentation).",
)
@click.option(
    "--which",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
    help="Weights of a run to evaluate: its best or its last epoch.",
)
@click.option(
    "--groups",
    "--energy-groups",
    "groups",
    is_flag=True,
    help="Add the accuracy on the training set's low / others / high energy sets (a pass over the "
    "training images: all of them, or the first --limit-train).",
)
@click.option(
    "--scores",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Score file for the energy groups (implies --groups; default: the store's scores of the run's teacher).",
)
@click.option(
    "--rate",
    type=FINITE,
    default=0.2,
    show_default=True,
    help="Share of the training set in the low and in the high energy set (--groups).",
)
@click.option(
    "--no-cache",
    "no_cache",
    is_flag=True,
    help="Measure again instead of reusing the results cached in <store>/cache/evaluations/.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Refuse runs without weights (stopped, or before their first epoch) instead of skipping them "
    "with a note.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw the training curves (loss, top-1, lr) of the runs among the targets into this PNG.",
)
@options(
    "config", "store", "data", "data_root", "device", "json", "quiet", "debug", "limit_train", "limit_test",
    "precision",
)  # fmt: skip
def evaluate(
    targets: tuple[str, ...],
    split: str,
    which: str,
    groups: bool,
    scores: Path | None,
    rate: float,
    no_cache: bool,
    plot: Path | None,
    strict: bool,
    **params: Any,
) -> None:
    """Top-1/top-5, NLL, calibration (ECE, 15 bins) and per-class accuracy of runs or models.

    A TARGET is a run directory (or a directory of runs), a run name under
    <store>/runs/, a model name in the store (with --data) or a .safetensors
    file. A run is evaluated on the data its config.toml names; its best- and
    last-epoch top-1 from training are shown too. Each target costs one pass
    over the test split, and its row is printed when it is done; results are
    cached per weights, data and options, so evaluating a run again is
    instant, and Ctrl-C keeps what is done. --groups adds the model's accuracy
    on the low / others / high energy sets of the training data (from
    --scores, or the score file of the run's teacher in the store); long-tailed
    data also get many/medium/few-shot accuracy. Several targets give one table
    (a data column when their data differ) grouped by configuration with mean ±
    sample std over seeds; runs without weights yet are skipped with a note
    (--strict refuses them). Runs at fp32 unless --precision is given.

    \b
    Example:
      ekd evaluate ekd-store/runs/*
      ekd evaluate resnet8 --data cifar100 --data-root ../shared/data/cifar100.npz
      ekd evaluate ekd-store/runs/distill-* --plot curves.png     # their training curves overlaid
      ekd evaluate my-run --groups --limit-train 10000 --json
      ekd evaluate my-run --which last --scores ekd-store/scores/cifar100/wrn_40_2.safetensors
    """
    from ekdcli.jobs.common import check_output, console
    from ekdcli.jobs.evaluate import run_evaluate
    from ekdcli.jobs.evaluate_report import format_evaluation

    config = build_config(params)
    check_output(config, plot, "--plot")
    plotted = None
    if plot is not None:
        from ekdcli.jobs.curves import plot_targets

        plotted = plot_targets(config, list(targets), plot)
    stream = not config.quiet and not config.json
    options = {"groups": groups, "stream": stream, "cache": not no_cache, "strict": strict}
    evaluated = run_evaluate(config, list(targets), split, scores, which, rate, **options)
    result = evaluated.as_dict()
    if plotted is not None:
        result["plot"] = str(plotted)
    rows_shown = stream and evaluated.requested > 1
    console(config).result(result, format_evaluation(result, rows=not rows_shown))
    if evaluated.interrupted:
        raise SystemExit(130)

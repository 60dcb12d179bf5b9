"""``ekd bench``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ekdcli.cli.options import COMMON, RUNTIME, build_config, options


@click.command("bench")
@options(
    "teacher",
    "student",
    "method",
    "augment",
    *COMMON,
    "recipe",
    "batch_size",
    "teacher_cache",
    "teacher_cache_dtype",
    *RUNTIME,
)
@click.option(
    "--aug-rates",
    default="0.1,0.5,1.0",
    show_default=True,
    help="Comma-separated augmentation rates; the first is the reference.",
)
@click.option(
    "--mode",
    type=click.Choice(["extra", "replace"]),
    default="extra",
    show_default=True,
    help="HE-DA cost mode: an extra mixed sub-batch (as released) or mixing in place.",
)
@click.option(
    "--steps", type=int, default=10, show_default=True, help="Training steps timed per rate and round."
)
@click.option(
    "--rounds", type=int, default=3, show_default=True, help="Interleaved rounds (medians are reported)."
)
@click.option(
    "--epochs",
    "train_epochs",
    type=int,
    help="Also train each rate for this many epochs and report accuracy (Table 5 style).",
)
@click.option(
    "--baseline",
    is_flag=True,
    help="Also time the same distillation without augmentation ('none' row, 'vs none' column).",
)
@click.option("--engine", is_flag=True, hidden=True, help="Moved: use 'ekd bench-engine'.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for bench.txt, bench.json and bench.png (default: <store>/bench/...).",
)
def bench(
    aug_rates: str,
    mode: str,
    steps: int,
    rounds: int,
    train_epochs: int | None,
    baseline: bool,
    engine: bool,
    out: Path | None,
    **params: Any,
) -> None:
    """Time HE-DA per augmentation rate (the paper's Table 6), side by side.

    For each rate: time per epoch and images/s of distillation with the
    augmentation (he-cutmix unless --augment says otherwise), and the increase
    relative to the first rate. Rates are interleaved over rounds and medians
    reported; epoch times are extrapolated from --steps steps per round.
    With --teacher-cache the rates read and fill the store's teacher cache,
    as `ekd distill --teacher-cache` does (mixed images are never cached).
    Uses the configured teacher, student and data (the embedded data and the
    default pair when nothing is configured).

    The engine's own variants (precision, memory format, compile, teacher
    cache) are timed by 'ekd bench-engine'.

    \b
    Example:
      ekd bench --aug-rates 0.1,0.5,1.0
      ekd bench --aug-rates 0.1,0.2,0.3,0.4,0.5,1.0 --mode replace --steps 20 --baseline
      ekd bench --aug-rates 0.2,0.5 --epochs 30 --json
    """
    from ekdcli.jobs.bench import parse_rates, run_bench
    from ekdcli.jobs.common import console
    from ekdcli.util.errors import UsageError

    if engine:
        raise UsageError("the engine variants are timed by their own command now: run 'ekd bench-engine'.")
    params.setdefault("method", None)
    rates = parse_rates(aug_rates)
    config = build_config(params)
    if config.sources.get("method") == "default":
        config.method = "kd"  # Table 6 times HE-DA on top of KD unless a method is configured
    console(config).result(
        run_bench(config, rates, mode, steps, rounds, train_epochs, out, baseline).as_dict()
    )

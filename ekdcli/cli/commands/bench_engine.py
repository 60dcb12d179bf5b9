"""``ekd bench-engine``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ekdcli.cli.options import COMMON, RUNTIME, build_config, options


@click.command("bench-engine")
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
    "--variants",
    default=",".join(("fp32", "bf16", "nchw", "compile", "cache-cold", "cache-warm")),
    show_default=True,
    help="The engine variants to time.",
)
@click.option(
    "--steps", type=int, default=10, show_default=True, help="Training steps timed per variant and round."
)
@click.option(
    "--rounds", type=int, default=3, show_default=True, help="Interleaved rounds (medians are reported)."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for bench-engine.txt and bench-engine.json (default: <store>/bench/...).",
)
def bench_engine(variants: str, steps: int, rounds: int, out: Path | None, **params: Any) -> None:
    """Images/s of one distillation step under each engine variant, and the default the engine picks.

    The configured method (energy_kd unless set) under fp32, bf16, NCHW
    instead of channels-last, torch.compile and the teacher cache cold
    (emptied each round) and warm (every view of the round filled first),
    interleaved over rounds; medians reported, with a verdict on whether the
    engine's default precision is the faster one here.

    \b
    Example:
      ekd bench-engine --teacher resnet32x4 --student resnet8x4 --data cifar100
      ekd bench-engine --variants fp32,bf16 --steps 20 --rounds 5
    """
    from ekdcli.jobs.bench_engine import parse_variants, run_engine_bench
    from ekdcli.jobs.common import console

    config = build_config(params)
    console(config).result(run_engine_bench(config, parse_variants(variants), steps, rounds, out).as_dict())

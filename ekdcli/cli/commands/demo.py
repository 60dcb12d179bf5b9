"""``ekd demo``."""

from __future__ import annotations

from typing import Any

import click

from ekdcli.cli.options import build_config, options


@click.command("demo")
@options(
    "config", "store", "data", "data_root", "teacher", "student", "device", "seed", "json", "quiet", "debug"
)
@click.option(
    "--quick", is_flag=True, help="A tiny setting (seconds, not minutes): checks that everything runs."
)
def demo(quick: bool, **params: Any) -> None:
    """Run the whole pipeline on the embedded handwritten digits in a few minutes on a CPU.

    Trains a teacher, scores the training set by energy, partitions it (with
    the paper's figures), distills a student with KD and with Energy KD +
    HE-DA, evaluates both side by side and times HE-DA per rate, printing
    where every artifact went.

    \b
    Example:
      ekd demo
      ekd demo --quick --store /tmp/ekd-demo
    """
    from ekdcli.jobs.common import console
    from ekdcli.jobs.demo import run_demo

    config = build_config(params)
    console(config).result(run_demo(config, quick=quick).as_dict())

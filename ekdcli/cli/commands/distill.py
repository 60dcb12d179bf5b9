"""``ekd distill``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ekdcli.cli.options import COMMON, RUNTIME, TRAINING, build_config, options


@click.command("distill")
@options(
    "teacher",
    "student",
    "method",
    "temperature_rule",
    "augment",
    "rate",
    "low_rate",
    "high_rate",
    "energy_temperature",
    *COMMON,
    *TRAINING,
    *RUNTIME,
    "teacher_cache",
    "teacher_cache_dtype",
    "verbose",
    "nproc",
)
@click.option(
    "--preset",
    type=click.Choice(["paper", "official"]),
    help="Energy temperature rule: the paper's Eq. 9 or the authors' released code (default paper).",
)
@click.option(
    "--source",
    type=click.Choice(["static", "online"]),
    help="Energy of each sample: from the scoring pass (static) or the current view (online).",
)
@click.option(
    "--apply",
    "apply_to",
    type=click.Choice(["both", "low", "high"]),
    help="Change the temperature of low-energy, high-energy or both sets (Table 4).",
)
@click.option("--segments", type=int, help="Temperature gradation over N energy segments (Table 4).")
@click.option(
    "--logit-standardize/--no-logit-standardize",
    default=None,
    help="Z-score teacher and student logits before temperature scaling (Sun et al. 2024).",
)
@click.option(
    "--mode",
    type=click.Choice(["extra", "replace"]),
    help="Augmentation cost mode: an extra mixed sub-batch, or mixing in place.",
)
@click.option(
    "--resume",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Continue a stopped run from its run directory.",
)
def distill(
    preset: str | None,
    source: str | None,
    apply_to: str | None,
    segments: int | None,
    logit_standardize: bool | None,
    mode: str | None,
    resume: Path | None,
    nproc: int | None,
    **params: Any,
) -> None:
    """Distill a teacher into a student: KD, DKD, MLKD, CTKD, Energy KD/DKD, HE-DA and ablations.

    A temperature-based method (kd, dkd, mlkd, ctkd, ...) takes its temperatures
    from a rule: --temperature-rule fixed (kd's default), energy (energy_kd's),
    gradation, or a plugin's; the rule's options go in [temperature] (--set
    temperature.KEY=VALUE), and --preset/--source/--apply/--segments/--rate reach
    an energy rule. The rule in use (preset, temperatures, rates, thresholds) is
    printed at the start and stored in the run directory.
    --rate is the paper's r: with an energy augmentation (he-cutmix, ...) it
    sets the augmentation rate and the distiller keeps its preset temperature
    rates unless --low-rate/--high-rate are given; with cutmix/mixup it mixes
    a random r of each batch (the control of HE-DA); otherwise it sets both
    temperature rates. Static energies come from the teacher's score file,
    computed first when missing.

    \b
    Example:
      ekd distill --teacher resnet32x4 --student resnet8x4 --data cifar100 --method energy_kd --rate 0.2
      ekd distill --method energy_dkd --augment he-cutmix --rate 0.5     # models from ekd.toml
      ekd distill --method kd --augment cutmix --rate 0.5                # a random half of each batch
      ekd distill --method kd --epochs 3                                  # embedded data, default pair
      ekd distill --method mlkd --temperature-rule energy --preset official   # MLKD with energy temperatures
      ekd distill --method energy_kd --nproc 2                            # two processes (torchrun)
    """
    from ekdcli.cli.launch import multiprocess

    energy = {"preset": preset, "source": source, "apply": apply_to, "segments": segments}
    config = build_config(
        params,
        tables={
            "energy": energy,
            "distiller": {"logit_standardize": logit_standardize},
            "augmentation": {"mode": mode},
        },
        resume=resume,
    )
    from ekdcli.jobs.distill import check_distill

    with multiprocess(nproc, check=lambda: check_distill(config, resume, nproc)):
        from ekdcli.jobs.common import console
        from ekdcli.jobs.distill import run_distill

        console(config).result(run_distill(config, resume=resume).as_dict())

"""``ekd import``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ekdcli.cli.options import build_config, options


@click.command("import")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@options("model", "config", "store", "data", "data_root", "json", "quiet", "debug")
@click.option("--name", help="Name in the store (default: the architecture's name).")
@click.option("--num-classes", type=int, help="Classes of the checkpoint (default: the dataset's).")
@click.option("--in-channels", type=int, help="Input channels of the checkpoint (default: the dataset's).")
@click.option(
    "--prefix",
    help="Keep only the keys under this prefix and strip it, e.g. 'student.' for a whole-distiller checkpoint.",
)
def import_(
    checkpoint: Path,
    name: str | None,
    num_classes: int | None,
    in_channels: int | None,
    prefix: str | None,
    **params: Any,
) -> None:
    """Import a checkpoint from mdistiller, RepDistiller or torchvision into the store.

    Reads {'model': state_dict}, {'state_dict': ...}, a bare state dict or a
    .safetensors file, safely (torch.load with weights_only=True: never
    arbitrary unpickling), strips 'module.' prefixes (and --prefix), checks
    every key and shape against the architecture, and writes
    <store>/models/<data>/<name>.safetensors.

    \b
    Example:
      ekd import resnet56_vanilla/ckpt_epoch_240.pth --model resnet56 --data cifar100
    """
    from ekdcli.jobs.common import console
    from ekdcli.jobs.import_ import run_import

    config = build_config(params)
    console(config).result(run_import(config, checkpoint, name, num_classes, in_channels, prefix).as_dict())

"""``ekd export``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ekdcli.cli.options import build_config, options


@click.command("export")
@click.argument("target", metavar="RUN|MODEL")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["torchscript", "onnx", "pt2"]),
    required=True,
    help="torchscript (torch.jit), onnx (torch.onnx; needs ekd[export]) or pt2 (torch.export).",
)
@click.option(
    "--with-preprocessing",
    is_flag=True,
    help="Fold the normalization in: the file takes uint8 images [N, C, H, W] (0-255).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output file (default: beside the weights, e.g. <run>/best.onnx).",
)
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@click.option(
    "--which",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
    help="Weights of a run to export: its best or its last epoch.",
)
@click.option(
    "--check",
    type=int,
    default=256,
    show_default=True,
    help="Test images on which the file's logits must match the eager model's (to 1e-4).",
)
@options("config", "store", "data", "data_root", "json", "quiet", "debug")
def export(
    target: str,
    fmt: str,
    with_preprocessing: bool,
    out: Path | None,
    force: bool,
    which: str,
    check: int,
    **params: Any,
) -> None:
    """Export a trained model (a student) as a file to deploy without ekd.

    RUN|MODEL is a run directory or a run name under <store>/runs/ (its best
    weights), a model name in the store (with --data) or a .safetensors file. A
    run is exported for the data its config.toml names. The file takes a batch
    of images of any size and returns logits; it is written only after its
    logits matched the eager model's on the first --check test images.

    \b
    Example:
      ekd export ekd-store/runs/distill-energy_kd-20250101-120000 --format onnx
      ekd export resnet8 --data cifar100 --data-root ../shared/data/tiny_cifar100.npz --format pt2
      ekd export my-run --format torchscript --with-preprocessing --out student.pt --force
    """
    from ekdcli.jobs.common import console
    from ekdcli.jobs.export import run_export

    config = build_config(params)
    result = run_export(
        config,
        target,
        fmt,
        with_preprocessing=with_preprocessing,
        out=out,
        force=force,
        which=which,
        check=check,
    )
    console(config).result(result.as_dict())

"""``ekd report``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ekdcli.cli.options import build_config, options


@click.command("report")
@click.argument("targets", nargs=-1, required=True, metavar="CAMPAIGN|RUN...")
@click.option(
    "--paper",
    metavar="TABLE",
    help="Put the paper's numbers beside ours: table1 ... table5, table7, figure2.",
)
@click.option(
    "--which",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
    help="Weights of each run to evaluate: its best or its last epoch.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for report.md/.csv/.json/.png (default: the campaign's folder; for runs ./ekd-report); "
    "an earlier report there moves to reports/<its time>/.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    help="Runs evaluated at once, as processes (default: the campaign's --jobs, else 1).",
)
@options("store", "device", "json", "quiet", "debug")
def report(
    targets: tuple[str, ...], paper: str | None, which: str, out: Path | None, jobs: int | None, **params: Any
) -> None:
    """A campaign's table in the paper's layout: rows = methods and variants, columns =
    teacher->student pairs, mean ± std over seeds with n.

    The numbers are those of 'ekd evaluate' on the same runs (test top-1 of
    the best or last weights, fp32), on the test images the runs were
    measured on (--limit-test), several runs at once with --jobs. CAMPAIGN
    is a name from 'ekd sweep' (its finished runs; it wins over a folder of
    that name); otherwise give run directories or run names. With
    --paper the paper's value and the difference (ours - paper) are added
    where the paper has that row and pair. Markdown, CSV, JSON (fractions)
    and a PNG (bars, or lines over the rate for rate sweeps) are written.

    \b
    Example:
      ekd report cpu-mini
      ekd report table5 --paper table5
      ekd report ekd-store/runs/table2.* --paper table2 --out reports/table2
    """
    from ekdcli.campaign.report import ReportRequest, markdown, run_report
    from ekdcli.jobs.common import check_output, console

    config = build_config(params)
    check_output(config, out)  # the campaign's own folder is the default, never a name given here
    result = run_report(config, ReportRequest(list(targets), paper, which, out, jobs))
    text = markdown(result) + "\nwritten: " + ", ".join(result["files"].values())
    console(config).result(result, text)

"""Training curves: ``curves.png`` in every run directory, and several runs overlaid
(``ekd evaluate --plot FILE``).  The records come from :mod:`ekdcli.store.rundir`."""

from __future__ import annotations

from pathlib import Path

from ekdcli.config import Config
from ekdcli.jobs.common import open_store
from ekdcli.jobs.console import Console
from ekdcli.jobs.targets import runs_among
from ekdcli.store import rundir
from ekdcli.util.errors import UsageError


def draw_run_curves(run_dir: Path) -> Path | None:
    """``<run_dir>/curves.png`` from its metrics.jsonl (None before the first finished epoch)."""
    from ekdcli.method.figures import training_curves

    records = rundir.read_metrics(run_dir)
    if not records:
        return None
    return training_curves([(run_dir.name, records)], run_dir / rundir.CURVES)


def plot_runs(run_dirs: list[Path], path: Path) -> Path:
    """The curves of ``run_dirs`` overlaid in one PNG; each is labelled by its directory's name."""
    from ekdcli.method.figures import training_curves

    if path.suffix.lower() != ".png":
        raise UsageError(f"--plot writes a PNG image; give a file name ending in .png, not {path.name!r}.")
    if not run_dirs:
        raise UsageError(
            "--plot draws the training curves of runs, and none of the targets is a run directory or a run "
            "name; pass runs (e.g. ekd-store/runs/*)."
        )
    runs = [(run_dir.name, rundir.read_metrics(run_dir)) for run_dir in run_dirs]
    empty = [label for label, records in runs if not records]
    if len(empty) == len(runs):
        raise UsageError(
            f"no epoch has finished yet in {', '.join(empty)}; plot them after their first epoch."
        )
    return training_curves([run for run in runs if run[1]], path)


def plot_targets(config: Config, refs: list[str], path: Path) -> Path:
    """``ekd evaluate --plot FILE``: the training curves of the runs among the targets, overlaid."""
    runs = runs_among(open_store(config), refs)
    drawn = plot_runs(runs, Path(path))
    Console(quiet=config.quiet, json_mode=config.json).say(f"training curves of {len(runs)} run(s): {drawn}")
    return drawn

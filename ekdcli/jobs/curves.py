"""Training curves: ``curves.png`` in every run directory, and several runs overlaid
(``ekd evaluate --plot FILE``).  The records come from :mod:`ekdcli.store.rundir`."""

from __future__ import annotations

from pathlib import Path

from ekdcli.config import Config
from ekdcli.jobs.common import open_store
from ekdcli.jobs.console import Console
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


def runs_among(config: Config, refs: list[str]) -> list[Path]:
    """The run directories among ``refs``: run directories, directories of runs, run names in the store."""
    runs: list[Path] = []
    for ref in refs:
        path = Path(ref).expanduser()
        if not path.exists() and "/" not in ref:
            path = open_store(config).runs_dir() / ref
        if path.is_file() and path.name in rundir.RUN_FILES:  # e.g. runs/*/summary.json
            path = path.parent
        if path.is_dir() and rundir.is_run_dir(path):
            runs.append(path)
        elif path.is_dir():
            runs += sorted(p for p in path.iterdir() if p.is_dir() and rundir.is_run_dir(p))
    return list(dict.fromkeys(runs))


def plot_targets(config: Config, refs: list[str], path: Path) -> Path:
    """``ekd evaluate --plot FILE``: the training curves of the runs among the targets, overlaid."""
    runs = runs_among(config, refs)
    drawn = plot_runs(runs, Path(path))
    Console(quiet=config.quiet, json_mode=config.json).say(f"training curves of {len(runs)} run(s): {drawn}")
    return drawn

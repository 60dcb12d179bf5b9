"""``ekd sweep``."""

from __future__ import annotations

from typing import Any

import click

from ekdcli.cli.options import build_config, options


@click.command("sweep")
@click.argument("configs", nargs=-1, metavar="CONFIG...")
@click.option(
    "--seeds", metavar="S1,S2,...", help="Seeds of every configuration (default: each config's seed)."
)
@click.option(
    "--grid",
    multiple=True,
    metavar="KEY=V1,V2",
    help="Run every value of a config key (repeatable; the Cartesian product): method=kd,energy_kd, "
    "rate=0.3,0.5, energy.preset=paper,official.",
)
@click.option(
    "--teacher-config",
    metavar="FILE",
    help="Training recipe (lr, epochs, batch_size, [train]) of the teachers the campaign trains "
    "(default: each teacher model's own recipe for its dataset; never a student's).",
)
@click.option("--name", help="Campaign name (default: the config's stem, or the folder of the configs).")
@click.option(
    "--executor", default="local", show_default=True, help="local, ray, slurm (see 'ekd list executors')."
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Runs at once (processes, or Ray tasks).",
)
@click.option(
    "--cpus-per-run",
    type=click.IntRange(min=1),
    help="CPU threads of each run, recorded with a new campaign (default: this machine's CPUs / --jobs); "
    "a later sweep keeps it, since it changes a CPU run's numbers.",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    help="Every run as N data-parallel processes (DDP), scheduled with N GPUs by every executor.",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0, min_open=True),
    metavar="MINUTES",
    help="Stop a run after this long (it keeps its checkpoint; --retries continues it); local and slurm.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Run a run that failed for a reason other than its config again, from its checkpoint, up to N times.",
)
@click.option(
    "--executor-option",
    "executor_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="An option of the executor (repeatable), e.g. partition=gpu, account=abc, array=true for "
    "--executor slurm (a KEY it does not take is refused with the list of those it takes).",
)
@click.option("--ray-address", help="Ray cluster to run on (default: RAY_ADDRESS, else a local Ray runtime).")
@click.option("--dry-run", is_flag=True, help="Print the plan (runs, prerequisites, what is done) and stop.")
@click.option("--retry-failed", is_flag=True, help="Run the runs that failed before again.")
@click.option("--status", "status_name", metavar="NAME", help="Show the progress of campaign NAME and stop.")
@options("store", "set_values", "json", "quiet", "verbose", "debug")
def sweep(configs: tuple[str, ...], status_name: str | None, **params: Any) -> None:
    """Run a campaign: every CONFIG x every --grid value x every seed, as separate runs.

    Runs are named <config stem>[-<key><value>...]-seed<S> and written to
    <store>/runs/<campaign>.<run>; the campaign (its definition, a copy of
    each config, one state file per run, the logs) to <store>/campaigns/<NAME>/.
    Running the same command again skips finished runs, resumes interrupted
    ones from their checkpoints, and retries failed ones only with
    --retry-failed; a failed run never stops the others. A teacher or score
    file that several runs need is built once, before them. --set applies to
    every run. With --executor ray the store must be an absolute path that
    every node of the cluster shares.

    \b
    Example:
      ekd sweep examples/paper/table5/*.toml --seeds 0,1,2 --jobs 2 --dry-run
      ekd sweep cfg.toml --grid method=kd,energy_kd --grid rate=0.3,0.5 --seeds 0,1 --jobs 2
      ekd sweep --name table5                 # continue a campaign as it was defined
      ekd sweep --status table5
      ekd sweep --name table5 --executor ray --ray-address auto --store /shared/ekd-store
      ekd sweep imagenet/*.toml --nproc 4 --executor slurm --executor-option partition=gpu \
          --time-limit 1440 --retries 3 --store /shared/ekd-store
    """
    from ekdcli.campaign.sweep import failure_message, run_sweep, sweep_status
    from ekdcli.campaign.sweep_text import status_text
    from ekdcli.jobs.common import console
    from ekdcli.util.errors import JobError

    request = _request(configs, params)  # takes its flags out of params
    config = build_config(params)
    out = console(config)
    if status_name is not None:
        result = sweep_status(config, status_name)
        out.result(result, status_text(result))
        return
    result = run_sweep(config, request)
    out.result(result, None if request.dry_run else status_text(result))
    message = failure_message(result)
    if message:
        raise JobError(message)


_REQUEST_FLAGS = (
    "seeds", "grid", "name", "executor", "jobs", "ray_address", "dry_run", "retry_failed",
    "teacher_config", "cpus_per_run", "nproc", "time_limit", "retries", "executor_options",
)  # fmt: skip


def _request(configs: tuple[str, ...], params: dict[str, Any]) -> Any:
    """The sweep's request from its flags (removed from ``params``; the rest make the Config)."""
    from ekdcli.campaign.sweep import SweepRequest

    flags = {key: params.pop(key) for key in _REQUEST_FLAGS}
    flags["grid"], flags["executor_options"] = list(flags["grid"]), list(flags["executor_options"])
    return SweepRequest(configs=list(configs), sets=list(params.pop("set_values") or ()), **flags)

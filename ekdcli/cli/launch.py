"""Multi-process runs from the command line: ``--nproc N`` and life under ``torchrun``.

``ekd train --nproc 2 ...`` re-runs the same command as
``python -m torch.distributed.run --standalone --nproc_per_node 2 -m ekdcli train ...`` (without
``--nproc``) and exits with its code.  Under ``torchrun`` (RANK / WORLD_SIZE in the environment)
every rank runs the command; ranks other than 0 print nothing (their errors still reach stderr),
and rank 0 is the only one that writes files.

What happens on errors: an error raised identically on every rank (bad options) ends every rank
with it.  A rank that fails alone exits; ``torchrun`` then stops the other ranks (its default is no
restart) and exits non-zero itself, so nothing waits forever.  Processes started by hand with
RANK/WORLD_SIZE but no ``torchrun`` wait in their next collective until torch's process-group
timeout (30 minutes by default) instead.

Nothing here imports torch at module level: ``ekd --help`` stays fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import click

from ekdcli.util.errors import UsageError

T = TypeVar("T")


def under_torchrun(env: Mapping[str, str] | None = None) -> bool:
    """True when this process is one rank of a launched group (torchrun sets RANK and WORLD_SIZE)."""
    env = os.environ if env is None else env
    return "RANK" in env and "WORLD_SIZE" in env


def env_rank(env: Mapping[str, str] | None = None) -> int:
    """This process's rank as torchrun announced it (0 when not launched)."""
    env = os.environ if env is None else env
    return int(env.get("RANK", "0")) if under_torchrun(env) else 0


def strip_nproc(args: list[str]) -> list[str]:
    """``args`` without ``--nproc N`` / ``--nproc=N`` (the relaunched ranks must not relaunch)."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept


def torchrun_argv(nproc: int, args: list[str], python: str | None = None) -> list[str]:
    """The command line that runs ``ekd <args>`` as ``nproc`` processes on this machine."""
    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1, not {nproc}.")
    return [
        python or sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "ekdcli",
        *strip_nproc(args),
    ]


def command_args(ctx: click.Context) -> list[str]:
    """The arguments of the running subcommand, rebuilt from what was given on the command line.

    Rebuilt from the parsed parameters (not ``sys.argv``), so the re-launch repeats exactly this
    command however ``main`` was called.  Only values that came from the command line are repeated:
    the ranks read ``ekd.toml`` and the environment themselves.
    """
    args: list[str] = [ctx.info_name or ctx.command.name or ""]
    positional: list[str] = []
    for param in ctx.command.get_params(ctx):
        name = param.name
        if name is None or name not in ctx.params:
            continue
        if ctx.get_parameter_source(name) != click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[name]
        if isinstance(param, click.Argument):
            positional += _as_strings(value, param.nargs != 1 or param.multiple)
        elif isinstance(param, click.Option):
            args += _option_args(param, value)
    return args + positional


def _as_strings(value: Any, many: bool) -> list[str]:
    values = list(value) if many and isinstance(value, (list, tuple)) else [value]
    return [str(v) for v in values if v is not None]


def _option_args(option: click.Option, value: Any) -> list[str]:
    flag = option.opts[0]
    if option.is_flag and option.secondary_opts:  # --x/--no-x
        return [flag] if value else [option.secondary_opts[0]]
    if option.count:
        return [flag] * int(value)
    if option.is_flag:
        return [flag] if value else []
    groups = list(value) if option.multiple else [value]
    out: list[str] = []
    for group in groups:
        items = list(group) if option.nargs != 1 and isinstance(group, (list, tuple)) else [group]
        out += [flag, *(str(item) for item in items)]
    return out


def relaunch(nproc: int, args: list[str]) -> NoReturn:
    """Run ``ekd <args>`` under torchrun with ``nproc`` processes and exit with its code.

    Ctrl-C reaches torchrun and its ranks too (same terminal process group): this process keeps
    waiting so that the ranks save their checkpoint and stop on their own.
    """
    argv = torchrun_argv(nproc, args)
    env = dict(os.environ)
    # torchrun warns and sets 1 thread when unset; the engine sets its own count per rank anyway.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    sys.stdout.flush()
    sys.stderr.flush()
    process = subprocess.Popen(argv, env=env)
    while True:
        try:
            sys.exit(process.wait())
        except KeyboardInterrupt:
            continue


@contextmanager
def multiprocess(
    nproc: int | None, ctx: click.Context | None = None, check: Callable[[], object] | None = None
) -> Iterator[None]:
    """Wrap a command's body: re-launch under torchrun for ``--nproc N > 1``, quiet ranks > 0 under
    torchrun, and leave the process group at the end.

    ``check`` runs before the re-launch: a bad option is said once, by this process, instead of by
    every rank and torchrun after them.  Under torchrun ``--nproc`` is ignored: the launcher
    already fixed the number of processes.
    """
    if nproc is not None and nproc < 1:
        raise UsageError(f"--nproc must be at least 1, not {nproc}.")
    if nproc is not None and nproc > 1 and not under_torchrun():
        if check is not None:
            check()
        relaunch(nproc, command_args(ctx or click.get_current_context()))
    if not under_torchrun():
        yield
        return
    saved = sys.stdout, sys.stderr
    devnull = None
    if env_rank() != 0:
        # Messages go to stdout, or to stderr with --json; rank 0 says them.  The streams come back
        # before an error propagates, so the CLI still prints this rank's error.
        devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        sys.stdout = sys.stderr = devnull
    try:
        yield
        _finish()
    finally:
        if devnull is not None:
            sys.stdout, sys.stderr = saved
            devnull.close()


def _finish() -> None:
    """After a successful command all ranks meet (so every file exists when any rank exits), then
    leave the group.  Not after an error: another rank may never arrive, and torchrun stops the rest.
    """
    if "torch.distributed" not in sys.modules:
        return
    from ekdcli.engine import ddp

    ddp.barrier()
    ddp.cleanup()

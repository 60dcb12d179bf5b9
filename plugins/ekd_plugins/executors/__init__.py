"""First-party campaign executors for ``ekd sweep``: ``local`` (processes on this machine), ``ray`` and
``slurm``.

Only names and ``"module:attr"`` strings here: neither Ray, submitit nor torch is imported until an
executor is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ekdcli.sdk.hookspecs import hookimpl

_PKG = "ekd_plugins.executors"


@hookimpl
def register_executors(register: Callable[..., Any]) -> None:
    register(
        "local",
        f"{_PKG}.local:LocalExecutor",
        description="up to --jobs runs at once as processes on this machine (one GPU each, or a share of the CPU)",
        info={"options": {"jobs": 1, "time_limit": None}, "remote": False},
    )
    register(
        "ray",
        f"{_PKG}.ray_executor:RayExecutor",
        description="each run a Ray task on the cluster of --ray-address / RAY_ADDRESS, else a local Ray runtime "
        "(pip install 'ekd[ray]')",
        info={
            "options": {"jobs": 1, "address": None, "cpus_per_run": None, "verbose": False},
            "remote": True,
        },
    )
    register(
        "slurm",
        f"{_PKG}.slurm:SlurmExecutor",
        description="each run a Slurm job (or one job array), submitted with submitit; preempted jobs are "
        "requeued and resume from their checkpoints (pip install 'ekd[slurm]')",
        info={
            "options": {
                "jobs": 1,
                "partition": None,
                "account": None,
                "time_limit": None,
                "gpus_per_run": 1,
                "cpus_per_run": None,
                "mem": None,
                "setup": None,
                "array": False,
                "folder": None,
                "cluster": "slurm",
            },
            "remote": True,
        },
    )

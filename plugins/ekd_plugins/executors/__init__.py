"""First-party campaign executors for ``ekd sweep``: ``local`` (processes on this machine) and ``ray``.

Only names and ``"module:attr"`` strings here: neither Ray nor torch is imported until an
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
        info={"options": {"jobs": 1}, "remote": False},
    )
    register(
        "ray",
        f"{_PKG}.ray_executor:RayExecutor",
        description="each run a Ray task on the cluster of --ray-address / RAY_ADDRESS, else a local Ray runtime "
        "(pip install 'ekd[ray]')",
        info={"options": {"jobs": 1, "address": None, "cpus_per_run": None}, "remote": True},
    )

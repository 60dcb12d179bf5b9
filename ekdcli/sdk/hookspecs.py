"""The plugin hooks of ekd (pluggy project name ``ekd``, entry-point group ``ekd``).

Every hook receives a ``register`` callable; the core owns names, aliases and
collisions.  Plugin modules must stay cheap to import: no torch at module level,
heavy imports happen inside factories (or factories are ``"module:attr"``
strings that the core imports on first use).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "ekd"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., Any]  # the ``register`` callable each hook receives


@hookspec
def register_models(register: Register) -> None:
    """Register model architectures.

    ``register(name, factory, *, aliases=(), description="", info=None)`` where
    ``factory(num_classes: int, in_channels: int = 3, **options) -> torch.nn.Module``
    (or a ``"module:attr"`` string naming it).  The module's ``forward(x)``
    returns logits (and builds nothing else); ``forward(x, return_features=True)``
    returns ``(logits, {"feats": [...], "preact_feats": [...], "pooled_feat": tensor})``
    at mdistiller's positions (``contracts.FEATURE_KINDS``; a kind the model lacks is
    an empty list).  A model may have the methods ``get_bn_before_relu()`` and
    ``get_stage_channels()`` (``contracts.MODEL_HOOKS``).  ``info`` is static
    metadata shown by ``ekd list`` without building the model, e.g.
    ``{"params_100": 278324, "family": "cifar", "features": ["feats",
    "preact_feats", "pooled_feat"], "model_hooks": ["bn_before_relu",
    "stage_channels"]}``: ``features`` and ``model_hooks`` say what the model
    provides to feature distillers (absent: nothing).
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets and dataset builders (long-tailed ones included).

    ``register(name, factory, *, aliases=(), description="", info=None)`` where
    ``factory(root: str | None, **options) -> ekdcli.sdk.contracts.InMemoryDataset | ekdcli.sdk.contracts.FolderDataset``.
    """


@hookspec
def register_distillers(register: Register) -> None:
    """Register distillation methods.

    ``register(name, factory, *, aliases=(), description="", info=None)`` where
    ``factory(**options) -> ekdcli.sdk.contracts.Distiller``.
    """


@hookspec
def register_temperature_rules(register: Register) -> None:
    """Register temperature rules (``--temperature-rule``): fixed, energy, gradation, ...

    ``register(name, factory, *, aliases=(), description="", info=None)`` where
    ``factory(**options) -> ekdcli.sdk.contracts.TemperatureRule``.  ``info["options"]`` is an
    option record (:func:`ekdcli.sdk.options.option` fields) or a plain dict of the defaults
    (``ekd list temperature-rules``); ``info["needs_energy"]`` says that the rule reads the score file, so the ``[energy]`` table and ``--preset``,
    ``--rate``, ... reach it.
    """


@hookspec
def register_augmentations(register: Register) -> None:
    """Register batch augmentations (HE-DA and friends).

    ``register(name, factory, *, aliases=(), description="", info=None)`` where
    ``factory(**options) -> ekdcli.sdk.contracts.Augmentation``.
    """


@hookspec
def register_trackers(register: Register) -> None:
    """Register experiment trackers (``--track NAME``, ``track = [...]``).

    ``register(name, factory, *, aliases=(), description="", info=None)`` where
    ``factory() -> ekdcli.sdk.contracts.Tracker``; import the tracking library inside the factory
    (or name it as a ``"module:attr"`` string), so that a missing package is reported only
    when someone asks for the tracker.  ``info["extra"]`` names the pip extra that installs it.
    """


@hookspec
def register_commands(register: Register) -> None:
    """Register extra CLI subcommands: ``register(name, click_command_or_"module:attr")``."""


@hookspec
def register_executors(register: Register) -> None:
    """Register campaign executors (``ekd sweep --executor NAME``).

    ``register(name, factory, *, aliases=(), description="", info=None)`` where
    ``factory(jobs: int, **options) -> ekdcli.sdk.contracts.Executor``; ``info["options"]``
    lists the options it takes besides ``jobs`` (``ekd sweep`` passes ``address`` from
    ``--ray-address``), ``info["remote"]`` says whether it may run tasks on other machines.
    """

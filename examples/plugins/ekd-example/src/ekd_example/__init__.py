"""ekd-example: a third-party ekd plugin, discovered through the ``ekd`` entry-point group.

It registers one model (``convmixer_tiny``), two long-tailed dataset builders
(``digits-lt``, ``listfile-lt``), one temperature rule (``confidence``) and one command
(``ekd class-counts``).

This module is imported by every ``ekd`` invocation, ``ekd --help`` included, so
it holds names and metadata only: each factory is a ``"module:attr"`` string the
core imports the first time the component is used (torch is imported there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ekdcli.sdk.hookspecs import hookimpl

__version__ = "0.1.0"

# Exact parameter count of convmixer_tiny at 100 classes and 3 input channels (a test rebuilds it).
CONVMIXER_TINY_PARAMS_100 = 96228


@hookimpl
def register_models(register: Callable[..., Any]) -> None:
    """A model the core zoo lacks: a small ConvMixer for 32x32 inputs."""
    register(
        "convmixer_tiny",
        "ekd_example.convmixer:convmixer_tiny",
        aliases=("convmixer-tiny",),
        description="ConvMixer-128/4 (kernel 5, patch 2) for 32x32 images, ~0.1M parameters",
        info={
            "params_100": CONVMIXER_TINY_PARAMS_100,
            "family": "cifar",
            "input": "32x32",
            "options": {"dim": 128, "depth": 4, "kernel_size": 5, "patch_size": 2},
            # what feature distillers may read (ekdcli.sdk.contracts FEATURE_KINDS / MODEL_HOOKS)
            "features": ["feats", "pooled_feat"],
            "model_hooks": ["stage_channels"],
        },
    )


@hookimpl
def register_datasets(register: Callable[..., Any]) -> None:
    """Long-tailed builders the core lacks: Zipf-profiled digits, and ImageNet-LT style list files."""
    register(
        "digits-lt",
        "ekd_example.longtail:digits_lt",
        aliases=("digits_lt",),
        description="long-tailed embedded digits (Zipf profile, n_min/n_max = imbalance_factor), offline",
        info={
            "kind": "in-memory",
            "classes": 10,
            "image_size": 32,
            "channels": 1,
            "options": {"imbalance_factor": 0.1, "profile": "zipf|exp|step", "seed": 0, "size": 32},
        },
    )
    register(
        "listfile-lt",
        "ekd_example.listfile:listfile_lt",
        aliases=("listfile_lt",),
        description="ImageNet-LT style: --data-root with train.txt/test.txt of 'path label' lines, in memory",
        info={
            "kind": "in-memory",
            "channels": 3,
            "image_size": 32,
            "options": {"image_size": 32, "train_list": "train.txt", "test_list": "test.txt", "workers": 0},
        },
    )


@hookimpl
def register_temperature_rules(register: Callable[..., Any]) -> None:
    """A temperature rule the core lacks: the teacher's top probability sets each sample's T."""
    register(
        "confidence",
        "ekd_example.confidence:make_confidence",
        description="T = t_min + (t_max - t_min) * the teacher's top probability (confident: smoother)",
        info={"needs_energy": False, "options": {"t_min": 2.0, "t_max": 6.0}},
    )


@hookimpl
def register_commands(register: Callable[..., Any]) -> None:
    """An extra subcommand, ``ekd class-counts``; its module is imported only when it runs."""
    register(
        "class-counts",
        "ekd_example.command:class_counts",
        description="Images per class of a dataset and its imbalance ratio.",
    )

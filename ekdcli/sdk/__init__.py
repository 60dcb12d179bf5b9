"""The plugin SDK: everything a plugin (first-party or third-party) imports from ekd.

    from ekdcli.sdk import hookimpl, UsageError, owner, as_int, InMemoryDataset, Distiller, TemperatureRule

Importing this package stays cheap (no torch): the names that need torch (``from_arrays``,
``make_long_tailed``, ``kd_loss``, ``apply_mix``, ...) load on first use.  The same names are
importable from their modules: ``hookspecs``, ``contracts``, ``errors``, ``options``, ``energy``,
``losses``, ``data``, ``longtail``, ``mixing``, ``plugins`` (the registries).  docs/plugins.md
shows each in use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ekdcli.sdk.contracts import (
    FEATURE_KINDS,
    MODEL_HOOKS,
    Augmentation,
    AugmentationSummary,
    Dataset,
    DistillBatch,
    Distiller,
    EnergyContext,
    EnergyGroups,
    ExecTask,
    Executor,
    FeatureDistiller,
    Features,
    FolderDataset,
    InMemoryDataset,
    LossSummary,
    MixResult,
    PairContext,
    RuleSummary,
    RunInfo,
    TaskOutcome,
    TemperatureDistiller,
    TemperatureRule,
    Tracker,
    flatten,
    labels_fingerprint,
    numbers,
)
from ekdcli.sdk.energy import ENERGY_TEMPERATURE, Thresholds, compute_thresholds, energy
from ekdcli.sdk.errors import EkdError, JobError, PluginError, UsageError, did_you_mean
from ekdcli.sdk.hookspecs import hookimpl
from ekdcli.sdk.losses import kd_loss, per_sample_temperature, upcast
from ekdcli.sdk.options import (
    as_bool,
    as_choice,
    as_float,
    as_int,
    as_pair,
    as_rate,
    as_seed,
    augmentation_rate,
    both_sides_rate,
    check_names,
    defaults,
    given,
    option,
    owner,
    partition_rates,
    pick,
    read_options,
)
from ekdcli.sdk.plugins import registry
from ekdcli.sdk.temperature import split_rule_options

if TYPE_CHECKING:
    from ekdcli.sdk.data import describe_class_counts, from_arrays, read_npz
    from ekdcli.sdk.longtail import keep_per_class, long_tail_counts, make_long_tailed, subsample_per_class
    from ekdcli.sdk.mixing import MixedBatch, apply_mix
    from ekdcli.sdk.splits import TensorSplit, normalize

# names whose modules import torch: loaded when first asked for
_LAZY = {
    "from_arrays": "ekdcli.sdk.data",
    "read_npz": "ekdcli.sdk.data",
    "describe_class_counts": "ekdcli.sdk.data",
    "make_long_tailed": "ekdcli.sdk.longtail",
    "long_tail_counts": "ekdcli.sdk.longtail",
    "keep_per_class": "ekdcli.sdk.longtail",
    "subsample_per_class": "ekdcli.sdk.longtail",
    "apply_mix": "ekdcli.sdk.mixing",
    "MixedBatch": "ekdcli.sdk.mixing",
    "TensorSplit": "ekdcli.sdk.splits",
    "normalize": "ekdcli.sdk.splits",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ekdcli.sdk' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ENERGY_TEMPERATURE",
    "FEATURE_KINDS",
    "MODEL_HOOKS",
    "Augmentation",
    "AugmentationSummary",
    "Dataset",
    "DistillBatch",
    "Distiller",
    "EkdError",
    "EnergyContext",
    "EnergyGroups",
    "ExecTask",
    "Executor",
    "FeatureDistiller",
    "Features",
    "FolderDataset",
    "InMemoryDataset",
    "JobError",
    "LossSummary",
    "MixResult",
    "MixedBatch",
    "PairContext",
    "PluginError",
    "TaskOutcome",
    "RuleSummary",
    "RunInfo",
    "TemperatureDistiller",
    "TemperatureRule",
    "TensorSplit",
    "Thresholds",
    "Tracker",
    "UsageError",
    "apply_mix",
    "as_bool",
    "as_choice",
    "as_float",
    "as_int",
    "as_pair",
    "as_rate",
    "augmentation_rate",
    "both_sides_rate",
    "defaults",
    "option",
    "partition_rates",
    "read_options",
    "as_seed",
    "check_names",
    "compute_thresholds",
    "describe_class_counts",
    "did_you_mean",
    "energy",
    "flatten",
    "from_arrays",
    "given",
    "hookimpl",
    "keep_per_class",
    "kd_loss",
    "labels_fingerprint",
    "long_tail_counts",
    "make_long_tailed",
    "normalize",
    "numbers",
    "owner",
    "per_sample_temperature",
    "pick",
    "read_npz",
    "registry",
    "split_rule_options",
    "subsample_per_class",
    "upcast",
]

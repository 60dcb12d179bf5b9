"""The options each distiller takes, stated once as option records (torch-free; ``ekd list`` shows them).

Each record is a frozen dataclass whose fields carry the default, the accepted values and a line
of help (:func:`ekdcli.sdk.options.option`); the registry derives ``info["options"]`` from it and
the factories read their options with :func:`ekdcli.sdk.options.read_options`.  ``None`` means
"not given" and, as a default, "decided by the preset or the teacher/student pair".  A
temperature-based distiller's record also has the options of its default temperature rule (``t``
of ``fixed``; the ``energy`` rule's for Energy KD / DKD): given to the distiller, they reach that rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from ekd_plugins.temperature_rules.options import EnergyOptions, FixedOptions
from ekdcli.sdk.options import defaults, option


@dataclass(frozen=True)
class CEOptions:
    """Cross-entropy takes no options."""


@dataclass(frozen=True)
class KDLoss:
    w_ce: float = option(0.1, "weight of the cross-entropy term", minimum=0.0)
    w_kd: float = option(0.9, "weight of the KD term", minimum=0.0)
    logit_standardize: bool = option(False, "z-score the logits of the distillation terms (Sun et al. 2024)")


@dataclass(frozen=True)
class DKDLoss:
    alpha: float = option(1.0, "weight of TCKD", minimum=0.0)
    beta: float | None = option(None, "weight of NCKD; default: the pair's DKD config, else 8", kind="float",
                                minimum=0.0)  # fmt: skip
    warmup: float = option(20.0, "epochs over which the DKD terms ramp up", minimum=0.0)
    w_ce: float = option(1.0, "weight of the cross-entropy term", minimum=0.0)
    logit_standardize: bool = option(False, "z-score the logits of the distillation terms (Sun et al. 2024)")
    pair: tuple[str, str] | None = option(None, "teacher,student: the pair's DKD beta", kind="pair")


@dataclass(frozen=True)
class KDOptions(KDLoss, FixedOptions):
    """KD: its loss weights and the ``fixed`` rule's ``t``."""


@dataclass(frozen=True)
class DKDOptions(DKDLoss, FixedOptions):
    """DKD: its loss weights and the ``fixed`` rule's ``t``."""


@dataclass(frozen=True)
class EnergyKDOptions(EnergyOptions, KDLoss):
    """Energy KD: KD's loss weights and the ``energy`` rule's options."""


@dataclass(frozen=True)
class EnergyDKDOptions(EnergyOptions, DKDLoss):
    """Energy DKD: DKD's loss weights and the ``energy`` rule's options."""


# MLKD (Jin et al., CVPR 2023): mdistiller's KD weights, used by the authors' CIFAR-100 configs.
@dataclass(frozen=True)
class MLKDLoss(KDLoss):
    """MLKD's weights (those of KD)."""


@dataclass(frozen=True)
class MLKDOptions(MLKDLoss, FixedOptions):
    """MLKD: its loss weights and the ``fixed`` rule's ``t``."""


# CTKD (Li et al., AAAI 2023): the released scripts' CIFAR-100 settings (train_student.py, run_cifar_distill.sh).
@dataclass(frozen=True)
class CTKDOptions:
    variant: str = option("global", "global (one learned T) or instance (an MLP per sample)",
                          choices=("global", "instance"))  # fmt: skip
    t_start: float = option(1.0, "the lowest learned temperature", positive=True)
    t_range: float = option(20.0, "the learned temperature's range above t_start", positive=True)
    lambda_min: float = option(0.0, "the gradient reversal's start")
    lambda_max: float = option(1.0, "the gradient reversal's end")
    lambda_epochs: int = option(10, "epochs of the cosine curriculum", minimum=1)
    hidden: int = option(128, "the instance MLP's width", minimum=1)
    w_ce: float = option(0.1, "weight of the cross-entropy term", minimum=0.0)
    w_kd: float = option(0.9, "weight of the KD term", minimum=0.0)
    logit_standardize: bool = option(False, "z-score the logits of the distillation terms (Sun et al. 2024)")


# The defaults as dicts, derived from the records.
CE_OPTIONS = defaults(CEOptions)
KD_LOSS = defaults(KDLoss)
DKD_LOSS = defaults(DKDLoss)
KD_OPTIONS = defaults(KDOptions)
DKD_OPTIONS = defaults(DKDOptions)
ENERGY_KD_OPTIONS = defaults(EnergyKDOptions)
ENERGY_DKD_OPTIONS = defaults(EnergyDKDOptions)
MLKD_LOSS = defaults(MLKDLoss)
MLKD_OPTIONS = defaults(MLKDOptions)
CTKD_OPTIONS = defaults(CTKDOptions)

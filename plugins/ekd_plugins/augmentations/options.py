"""The options of the mixing augmentations, stated once as an option record.  No torch here.

:class:`MixOptions` holds every option with its accepted values and help; an augmentation's own
record (:func:`options_record`) only changes the two defaults that depend on its kind and
selection (``alpha``: CutMix 1, MixUp 0.2; ``rate``: 1.0 for plain CutMix/MixUp, else 0.2).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import asdict, dataclass
from typing import Any

from ekdcli.sdk.options import option, owner, read_options

MODES = ("extra", "replace")
SOURCES = ("static", "online")
LOW_RULES = ("released", "paper")
KINDS = ("cutmix", "mixup")
SELECTIONS = ("all", "high", "low", "mixed")
DEFAULT_ALPHA = {"cutmix": 1.0, "mixup": 0.2}


def _rate(default: float) -> Any:
    return option(default, "the share of samples mixed, in (0, 1]", kind="rate")


def _alpha(default: float) -> Any:
    return option(default, "the mixing weight's Beta(alpha, alpha)", positive=True)


@dataclass(frozen=True)
class MixOptions:
    """The resolved options of one mixing augmentation."""

    rate: float = _rate(0.2)
    mode: str = option(
        "extra", "extra (mixed rows added to the batch) or replace (swapped in)", choices=MODES
    )
    source: str = option(
        "static", "static (the score file) or online (this batch's energies)", choices=SOURCES
    )
    alpha: float = _alpha(1.0)
    kd_weight: float = option(1.0, "weight of the KD term on the mixed rows", minimum=0.0)
    temperature: float = option(4.0, "the KD temperature on the mixed rows", positive=True)
    mixed_ce: bool = option(False, "add cross-entropy with the mixed labels")
    low_rule: str = option("released", "paper (E <= E_low) or released (E < E_low)", choices=LOW_RULES)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


VALID_OPTIONS = tuple(MixOptions.__dataclass_fields__)


@functools.cache
def options_record(kind: str, selection: str) -> type[MixOptions]:
    """:class:`MixOptions` with the ``rate`` and ``alpha`` defaults of this kind and selection."""
    rate = 1.0 if selection == "all" else 0.2
    fields = [("rate", float, _rate(rate)), ("alpha", float, _alpha(DEFAULT_ALPHA[kind]))]
    name = f"{selection.capitalize()}{kind.capitalize()}Options"
    return dataclasses.make_dataclass(name, fields, bases=(MixOptions,), frozen=True)


def parse_options(aug: str, kind: str, selection: str, options: dict[str, Any]) -> MixOptions:
    """Check ``options`` of augmentation ``aug`` and fill in the defaults of its kind and selection."""
    record = options_record(kind, selection)
    return record(**read_options(owner("augmentation", aug), record, options))

"""The options of the mixing augmentations, read with :mod:`ekdcli.sdk.options`.  No torch here."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.options import as_bool, as_choice, as_float, check_names, owner

MODES = ("extra", "replace")
SOURCES = ("static", "online")
LOW_RULES = ("released", "paper")
KINDS = ("cutmix", "mixup")
SELECTIONS = ("all", "high", "low", "mixed")
DEFAULT_ALPHA = {"cutmix": 1.0, "mixup": 0.2}


@dataclass(frozen=True)
class MixOptions:
    """The resolved options of one mixing augmentation."""

    rate: float
    mode: str = "extra"
    source: str = "static"
    alpha: float = 1.0
    kd_weight: float = 1.0
    temperature: float = 4.0
    mixed_ce: bool = False
    low_rule: str = "released"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


VALID_OPTIONS = tuple(MixOptions.__dataclass_fields__)


def parse_options(aug: str, kind: str, selection: str, options: dict[str, Any]) -> MixOptions:
    """Check ``options`` of augmentation ``aug`` and fill in the defaults of its kind and selection."""
    who = owner("augmentation", aug)
    check_names(who, options, VALID_OPTIONS)
    default_rate = 1.0 if selection == "all" else 0.2
    rate = as_float(who, "rate", options.get("rate", default_rate))
    if not 0.0 < rate <= 1.0:
        raise UsageError(f"option 'rate' of {who} must be in (0, 1], got {rate!r}.")
    alpha = as_float(who, "alpha", options.get("alpha", DEFAULT_ALPHA[kind]), positive=True)
    return MixOptions(
        rate=rate,
        mode=as_choice(who, "mode", options.get("mode", "extra"), MODES),
        source=as_choice(who, "source", options.get("source", "static"), SOURCES),
        alpha=alpha,
        kd_weight=as_float(who, "kd_weight", options.get("kd_weight", 1.0), non_negative=True),
        temperature=as_float(who, "temperature", options.get("temperature", 4.0), positive=True),
        mixed_ce=as_bool(who, "mixed_ce", options.get("mixed_ce", False)),
        low_rule=as_choice(who, "low_rule", options.get("low_rule", "released"), LOW_RULES),
    )


def default_options(kind: str, selection: str) -> dict[str, Any]:
    """The options an augmentation of this kind and selection gets when none are given."""
    return parse_options(f"{selection}-{kind}", kind, selection, {}).as_dict()

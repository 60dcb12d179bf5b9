"""First-party augmentations: HE-DA (CutMix / MixUp on high-energy samples) and its variants.

Factories are ``"module:attr"`` strings, so importing this module (``ekd --help``,
``ekd list``) does not import torch.  The engine contract is documented in
:mod:`ekd_plugins.augmentations.energy_mix`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ekd_plugins.augmentations.options import options_record
from ekdcli.sdk.hookspecs import hookimpl

_MODULE = "ekd_plugins.augmentations.energy_mix"

_SELECTION_TEXT = {
    "all": "every sample of each batch (or a random fraction `rate` of it: the control of HE-DA)",
    "high": "the highest-energy fraction `rate` of the training set (uncertain images)",
    "low": "the lowest-energy fraction `rate` of the training set (certain images)",
    "mixed": "the rate/2 lowest- and rate/2 highest-energy samples",
}
_PREFIX = {"all": "", "high": "he-", "low": "le-", "mixed": "mixed-"}
_KIND_TEXT = {"cutmix": "CutMix (lambda ~ Beta(1,1), box area)", "mixup": "MixUp (lambda ~ Beta(0.2,0.2))"}


def _entries() -> list[tuple[str, str, str, tuple[str, ...]]]:
    """``(name, kind, selection, aliases)`` of every registered augmentation."""
    entries = []
    for selection, prefix in _PREFIX.items():
        for kind in ("cutmix", "mixup"):
            name = f"{prefix}{kind}"
            aliases: tuple[str, ...] = (name.replace("-", "_"),) if "-" in name else ()
            if name == "he-cutmix":
                aliases += ("he-da", "heda")
            entries.append((name, kind, selection, aliases))
    return entries


@hookimpl
def register_augmentations(register: Callable[..., Any]) -> None:
    for name, kind, selection, aliases in _entries():
        register(
            name,
            f"{_MODULE}:{name.replace('-', '_')}",
            aliases=aliases,
            description=f"{_KIND_TEXT[kind]} on {_SELECTION_TEXT[selection]}",
            info={
                "needs_energy": selection != "all",
                "selection": selection,
                "kind": kind,
                "options": options_record(kind, selection),
            },
        )

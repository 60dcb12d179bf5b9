"""Which samples an energy-driven augmentation mixes: the high, low or both ends of the energies.

Thresholds come from :func:`ekdcli.sdk.energy.compute_thresholds` over the whole
training set (the released indexing): ``high`` is ``E > E_high`` at rate r,
``low`` is ``E < E_low`` (``E <= E_low`` with ``low_rule="paper"``) at rate r,
``mixed`` is the union of the r/2 lowest and the r/2 highest, ``all`` is
everything.  A rate of 1.0 selects every sample for every side (for ``mixed``
ties or an odd N would otherwise leave the median out).

``all`` at a rate below 1.0 is the random-selection control of HE-DA: each batch mixes
``round(rate * B)`` of its ``B`` rows, chosen with the engine's augmentation generator
(:meth:`EnergySelection.draw`), so the same seed (and a resumed run) draws the same rows.

Sources: ``static`` precomputes a boolean mask over the dataset once (on the
energies' device) and gathers it by sample index; ``online`` compares the
energies of the current batch, recomputed by the engine, with the thresholds.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ekdcli.sdk.energy import LowRule, Thresholds, compute_thresholds


class EnergySelection:
    """The selection rule of one augmentation; :meth:`fit` it on the dataset energies before use."""

    def __init__(self, side: str, rate: float, source: str, low_rule: LowRule = "released") -> None:
        self.side = side
        self.rate = rate
        self.source = source
        self.low_rule: LowRule = low_rule
        self.select_all = side == "all" or rate >= 1.0
        self.random = side == "all" and rate < 1.0  # the control: a random `rate` of each batch
        self.thresholds: Thresholds | None = None
        self.mask: torch.Tensor | None = None  # [N] bool over the dataset (static source)

    @property
    def needs_energy(self) -> bool:
        return self.side != "all"

    def rates(self) -> tuple[float, float]:
        """``(low_rate, high_rate)`` handed to ``compute_thresholds``; 0 keeps a side empty."""
        return {
            "high": (0.0, self.rate),
            "low": (self.rate, 0.0),
            "mixed": (self.rate / 2, self.rate / 2),
        }.get(self.side, (0.0, 0.0))

    def fit(self, energies: torch.Tensor) -> None:
        """Thresholds from the dataset energies and (static source) the dataset-wide mask."""
        low_rate, high_rate = self.rates()
        self.thresholds = compute_thresholds(energies, low_rate, high_rate, self.low_rule)
        self.mask = self.rule(energies.float())

    def rule(self, energies: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the given energies that fall in the selected set."""
        if self.select_all:
            return torch.ones_like(energies, dtype=torch.bool)
        if self.thresholds is None:
            raise RuntimeError(
                "the energy selection is used before fit(); call the augmentation's setup() first"
            )
        low, high = self.thresholds.is_low(energies), self.thresholds.is_high(energies)
        return {"high": high, "low": low, "mixed": low | high}[self.side]

    def select(self, indices: torch.Tensor, online_energies: torch.Tensor | None) -> torch.Tensor:
        """Boolean ``[B]`` on the device of ``indices``."""
        if self.select_all:
            return torch.ones(indices.shape[0], dtype=torch.bool, device=indices.device)
        if self.source == "online":
            if online_energies is None:
                raise ValueError("source 'online' needs the energies of the current batch (online_energies)")
            return self.rule(online_energies.float()).to(indices.device)
        if self.mask is None:
            raise RuntimeError(
                "the energy selection is used before fit(); call the augmentation's setup() first"
            )
        return self.mask[indices.to(self.mask.device)].to(indices.device)

    def draw(self, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The random control: ``round(rate * B)`` rows of the batch, drawn from ``generator``
        (one ``randperm`` of the batch); any other selection returns ``mask`` unchanged, drawing nothing."""
        if not self.random:
            return mask
        rows = mask.shape[0]
        count = math.floor(self.rate * rows + 0.5)
        order = torch.randperm(rows, generator=generator, device=generator.device)
        chosen = torch.zeros(rows, dtype=torch.bool, device=generator.device)
        chosen[order[:count]] = True
        return chosen.to(mask.device)

    def describe(self) -> dict[str, Any]:
        """Thresholds (None where infinite, i.e. no bound) and the selected fraction of the dataset."""
        side = "random" if self.random else self.side
        info: dict[str, Any] = {"selection": side, "selects_all": self.select_all and not self.random}
        if self.thresholds is not None:
            # None where a bound is unused by this side or infinite (no bound): JSON/TOML friendly.
            unused = {"high": "low", "low": "high"}.get(self.side)
            info["thresholds"] = {
                key: (
                    None
                    if key == unused or (isinstance(value, float) and not math.isfinite(value))
                    else value
                )
                for key, value in self.thresholds.as_dict().items()
            }
        if self.mask is not None and self.mask.numel():
            info["selected_fraction"] = float(self.mask.float().mean())
        return info

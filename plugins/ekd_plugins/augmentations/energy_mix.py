"""HE-DA and its variants: CutMix / MixUp on the samples chosen by teacher energy (docs/method.md#he-da).

Registered names (factory ``name(**options)``):

=================  ========  =========  ===========================================
name               kind      selection  what
=================  ========  =========  ===========================================
``cutmix``         CutMix    all        every sample ("KD+CutMix(100%)"); with ``rate`` < 1
                                        a random ``rate`` of each batch (the control)
``mixup``          MixUp     all        every sample; a random ``rate`` of each batch
``he-cutmix``      CutMix    high       HE-DA: the highest-energy fraction ``rate``
``he-mixup``       MixUp     high       HE-DA with MixUp (the paper's appendix)
``le-cutmix``      CutMix    low        the lowest-energy fraction (Figure 2)
``le-mixup``       MixUp     low
``mixed-cutmix``   CutMix    mixed      ``rate/2`` lowest + ``rate/2`` highest (Figure 2)
``mixed-mixup``    MixUp     mixed
=================  ========  =========  ===========================================

Options: ``rate`` (0, 1] (0.2; 1.0 for ``cutmix``/``mixup``, where a lower rate mixes a
random fraction of each batch), ``mode``
``extra|replace`` (extra), ``source`` ``static|online`` (static), ``alpha``
(Beta parameter; 1.0 CutMix, 0.2 MixUp), ``kd_weight`` (1.0), ``temperature``
(KD temperature on mixed rows, 4), ``mixed_ce`` (False), ``low_rule``
``released|paper`` (released: ``E < E_low``).

Engine contract, per training step with clean batch ``x, y, idx``:

1. ``mask = aug.select(idx, online)`` where ``online`` is ``energy(teacher(x))``
   at ``EnergyContext.energy_temperature`` when ``describe()["source"] ==
   "online"`` (the engine may skip it otherwise and pass ``None``);
2. ``mix = aug.mix(x, y, mask, generator)`` with a generator on ``x``'s device;
3. ``seen = ekdcli.sdk.mixing.apply_mix(x, mix, aug.mode)``; student and teacher run once
   on ``seen.images``;
4. the distiller gets the rows ``seen.clean_rows`` (in ``extra`` mode the whole clean batch,
   in ``replace`` mode the unmixed rows), ``aug.loss(s[seen.mixed_rows], t[seen.mixed_rows],
   mix, epoch)`` the mixed rows, which are in the order of ``mix.rows`` in both modes.

``extra`` (as released) costs ``M = mask.sum()`` more samples per step;
``replace`` keeps the batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ekd_plugins.augmentations import mixing
from ekd_plugins.augmentations.options import parse_options
from ekd_plugins.augmentations.selection import EnergySelection
from ekdcli.sdk.contracts import Augmentation, AugmentationSummary, EnergyContext, EnergyGroups, MixResult
from ekdcli.sdk.energy import as_low_rule
from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.losses import kd_loss


class EnergyMix(Augmentation):
    """CutMix or MixUp on the rows of each batch chosen by :class:`EnergySelection`."""

    def __init__(self, name: str, kind: str, selection: str, **options: Any) -> None:
        self.name = name
        self.kind = kind
        self.options = parse_options(name, kind, selection, options)
        self.mode = "replace" if self.options.mode == "replace" else "extra"
        self.selection = EnergySelection(
            selection, self.options.rate, self.options.source, as_low_rule(self.options.low_rule)
        )
        self.needs_energy = self.selection.needs_energy

    def setup(self, energy: EnergyContext | None) -> None:
        """Thresholds of the rate over the dataset energies (and the static mask)."""
        if not self.needs_energy:
            return
        if energy is None:
            raise UsageError(
                f"augmentation {self.name!r} selects samples by teacher energy; run 'ekd score' for this "
                f"teacher and dataset first, or use '{self.kind}' to mix every sample."
            )
        self.selection.fit(energy.energies)

    def describe(self) -> dict[str, Any]:
        return {
            "augment": self.name,
            "kind": self.kind,
            **self.options.as_dict(),
            **self.selection.describe(),
        }

    def summary(self) -> AugmentationSummary:
        """What it mixes, which samples (by energy or at random), how; its groups after :meth:`setup`."""
        described = self.selection.describe()
        side, share = described["selection"], f"{self.options.rate:.0%}"
        chosen = {
            "high": f"the {share} highest-energy images",
            "low": f"the {share} lowest-energy images",
            "all": "every image",
            "random": f"a random {share} of the images",
        }.get(side, f"{share} of the images")
        groups = None
        if "thresholds" in described or "selected_fraction" in described:
            groups = EnergyGroups(
                thresholds=described.get("thresholds"), selected_fraction=described.get("selected_fraction")
            )
        return AugmentationSummary(
            f"{self.name}: {self.kind} of {chosen} ({self.mode} mode)",
            selection=side,
            energy_source=self.options.source if self.needs_energy else None,
            rate=self.options.rate,
            groups=groups,
        )

    def select(self, indices: torch.Tensor, online_energies: torch.Tensor | None) -> torch.Tensor:
        return self.selection.select(indices, online_energies)

    def mix(
        self, images: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, generator: torch.Generator
    ) -> MixResult:
        mixer = mixing.cutmix if self.kind == "cutmix" else mixing.mixup
        mask = self.selection.draw(mask, generator)  # the random control's rows, first from the generator
        return mixer(images, labels, mask, generator, self.options.alpha)

    def loss(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, mix: MixResult, epoch: int
    ) -> dict[str, torch.Tensor]:
        """``mix_kd``: ``kd_weight * kd_loss`` at ``temperature``; ``mix_ce`` with ``mixed_ce``."""
        s = student_logits.float()
        t = teacher_logits.float()
        if s.shape[0] == 0:  # nothing mixed this step: zero terms that keep the graph connected
            zero = s.sum() * 0.0
            return {"mix_kd": zero, **({"mix_ce": zero} if self.options.mixed_ce else {})}
        terms = {"mix_kd": self.options.kd_weight * kd_loss(s, t, self.options.temperature)}
        if self.options.mixed_ce:
            lam = mix.lam.to(s.device).float()
            ce_a = F.cross_entropy(s, mix.labels_a.to(s.device), reduction="none")
            ce_b = F.cross_entropy(s, mix.labels_b.to(s.device), reduction="none")
            terms["mix_ce"] = (lam * ce_a + (1.0 - lam) * ce_b).mean()
        return terms


def _factory(name: str, kind: str, selection: str) -> Callable[..., EnergyMix]:
    def build(**options: Any) -> EnergyMix:
        return EnergyMix(name, kind, selection, **options)

    build.__name__ = name.replace("-", "_")
    build.__doc__ = f"Build the {name!r} augmentation ({kind} on selection {selection!r})."
    return build


cutmix = _factory("cutmix", "cutmix", "all")
mixup = _factory("mixup", "mixup", "all")
he_cutmix = _factory("he-cutmix", "cutmix", "high")
he_mixup = _factory("he-mixup", "mixup", "high")
le_cutmix = _factory("le-cutmix", "cutmix", "low")
le_mixup = _factory("le-mixup", "mixup", "low")
mixed_cutmix = _factory("mixed-cutmix", "cutmix", "mixed")
mixed_mixup = _factory("mixed-mixup", "mixup", "mixed")

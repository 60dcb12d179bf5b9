"""How a mix of batch rows becomes the batch the models see (one place, for the engine and plugins).

``extra`` (as the authors released HE-DA): the clean batch followed by the ``M`` mixed rows,
``B + M`` rows in all.  ``replace``: each selected row swapped for its mixed version, ``B``
rows.  In both modes the mixed rows come in the order of ``mix.rows``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ekdcli.util.errors import UsageError

if TYPE_CHECKING:
    import torch

    from ekdcli.sdk.contracts import MixResult

MODES = ("extra", "replace")


@dataclass
class MixedBatch:
    """The images the teacher and the student see, and which of their rows are clean or mixed."""

    images: torch.Tensor
    clean_rows: torch.Tensor  # long, ascending: rows holding unmixed samples
    mixed_rows: torch.Tensor  # long: rows holding mix.images, in mix.rows order

    def mixed_mask(self) -> torch.Tensor:
        """Boolean mask over the rows of :attr:`images`, true on the mixed rows."""
        import torch

        mask = torch.zeros(self.images.shape[0], dtype=torch.bool, device=self.images.device)
        mask[self.mixed_rows] = True
        return mask


def apply_mix(images: torch.Tensor, mix: MixResult, mode: str) -> MixedBatch:
    """The batch of ``images`` with ``mix`` applied in cost mode ``mode`` (``extra`` or ``replace``)."""
    import torch

    rows, device = images.shape[0], images.device
    mixed_images = mix.images.to(images.dtype)
    if mode == "extra":
        count = int(mix.rows.numel())
        return MixedBatch(
            images=torch.cat([images, mixed_images]),
            clean_rows=torch.arange(rows, device=device),
            mixed_rows=torch.arange(rows, rows + count, device=device),
        )
    if mode == "replace":
        where = mix.rows.to(device)
        keep = torch.ones(rows, dtype=torch.bool, device=device)
        keep[where] = False
        return MixedBatch(
            images=images.index_copy(0, where, mixed_images),
            clean_rows=keep.nonzero().squeeze(1),
            mixed_rows=where,
        )
    raise UsageError(f"augmentation mode must be one of {', '.join(MODES)}, got {mode!r}.")

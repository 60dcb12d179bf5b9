"""Loss math of the logit distillers: logit standardization and a stable DKD.

Everything runs in float32 at least (bf16/fp16 logits are upcast; float64 stays
float64 so that ``gradcheck`` can verify the gradients).  DKD is computed in log
space: the binary target / non-target log-probabilities come from
``logsumexp``, and NCKD only looks at the ``K - 1`` non-target columns, so
there is no ``log(0)``, no ``-1000`` mask and no overflow with huge logits.
"""

from __future__ import annotations

import torch

from ekdcli.sdk.losses import dkd_terms, non_target_columns, upcast

__all__ = ["dkd_terms", "non_target_columns", "standardize_logits", "upcast", "warmup_factor"]

# Sun et al. (CVPR 2024) add this to the standard deviation before dividing.
STANDARDIZE_EPS = 1e-7


def standardize_logits(logits: torch.Tensor) -> torch.Tensor:
    """Z-score of each row, ``(z - mean) / (std + 1e-7)`` with the unbiased std (as the authors)."""
    z = upcast(logits)
    std, mean = torch.std_mean(z, dim=-1, keepdim=True)
    return (z - mean) / (std + STANDARDIZE_EPS)


def warmup_factor(epoch: int, warmup: float) -> float:
    """DKD's linear warm-up ``min(epoch / warmup, 1)`` (epoch is 1-based; warmup 0 = none)."""
    return 1.0 if warmup <= 0 else min(epoch / warmup, 1.0)

"""Loss math of the logit distillers: logit standardization and a stable DKD.

Everything runs in float32 at least (bf16/fp16 logits are upcast; float64 stays
float64 so that ``gradcheck`` can verify the gradients).  DKD is computed in log
space: the binary target / non-target log-probabilities come from
``logsumexp``, and NCKD only looks at the ``K - 1`` non-target columns, so
there is no ``log(0)``, no ``-1000`` mask and no overflow with huge logits.
"""

from __future__ import annotations

import torch

from ekdcli.sdk.losses import per_sample_temperature, upcast

# Sun et al. (CVPR 2024) add this to the standard deviation before dividing.
STANDARDIZE_EPS = 1e-7


def standardize_logits(logits: torch.Tensor) -> torch.Tensor:
    """Z-score of each row, ``(z - mean) / (std + 1e-7)`` with the unbiased std (as the authors)."""
    z = upcast(logits)
    std, mean = torch.std_mean(z, dim=-1, keepdim=True)
    return (z - mean) / (std + STANDARDIZE_EPS)


def non_target_columns(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[B, K-1]`` class indices of every class except each row's label, in ascending order."""
    ar = torch.arange(num_classes - 1, device=labels.device).unsqueeze(0)
    return ar + (ar >= labels.reshape(-1, 1)).long()


def _binary_log_probs(scaled: torch.Tensor, labels: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """``[B, 2]`` log-probabilities of (target, all non-targets) of softmax(scaled)."""
    total = torch.logsumexp(scaled, dim=1)
    target = scaled.gather(1, labels.reshape(-1, 1)).squeeze(1)
    others = torch.logsumexp(scaled.gather(1, rest), dim=1)
    return torch.stack([target - total, others - total], dim=1)


def _kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``KL(p || q)`` per row from log-probabilities (terms with p = 0 contribute 0)."""
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def dkd_terms(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch means of ``T_i^2 * TCKD_i`` and ``T_i^2 * NCKD_i`` (Zhao et al., CVPR 2022).

    TCKD is the KL between the binary (target, non-target) distributions;
    NCKD the KL between the distributions over the non-target classes only
    (0 when K = 2).  ``temperature`` is a scalar or one value per row.
    """
    s = upcast(student_logits)
    t = upcast(teacher_logits).to(s.dtype)
    rows, num_classes = s.shape
    if num_classes < 2:
        raise ValueError("DKD needs at least 2 classes")
    temp = per_sample_temperature(temperature, rows, s).to(s.dtype)
    labels = labels.reshape(-1).long()
    rest = non_target_columns(labels, num_classes)
    s_scaled, t_scaled = s / temp, t / temp
    tckd = _kl_rows(_binary_log_probs(t_scaled, labels, rest), _binary_log_probs(s_scaled, labels, rest))
    log_t_rest = torch.log_softmax(t_scaled.gather(1, rest), dim=1)
    log_s_rest = torch.log_softmax(s_scaled.gather(1, rest), dim=1)
    nckd = _kl_rows(log_t_rest, log_s_rest)
    scale = temp.squeeze(1) ** 2
    return (tckd * scale).mean(), (nckd * scale).mean()


def warmup_factor(epoch: int, warmup: float) -> float:
    """DKD's linear warm-up ``min(epoch / warmup, 1)`` (epoch is 1-based; warmup 0 = none)."""
    return 1.0 if warmup <= 0 else min(epoch / warmup, 1.0)

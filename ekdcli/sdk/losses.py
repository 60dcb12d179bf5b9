"""Loss math shared by distillers and augmentations. Always computed in float32.

The drop-in losses at the end (:func:`energy_kd_loss`, :func:`energy_dkd_loss`,
:func:`energy_temperatures`) are stable public functions for one's own training loop
(docs/python-api.md, "Use the losses in your own loop"); ``import ekdcli as ekd`` has them too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ekdcli.sdk.energy import ENERGY_TEMPERATURE, energy

if TYPE_CHECKING:
    import torch

    from ekdcli.sdk.energy import Thresholds


def upcast(logits: torch.Tensor) -> torch.Tensor:
    """Low-precision logits to float32 (float64 stays float64, so gradcheck can run)."""
    import torch

    return logits if logits.dtype == torch.float64 else logits.float()


def per_sample_temperature(temperature: float | torch.Tensor, rows: int, like: torch.Tensor) -> torch.Tensor:
    """A ``[rows, 1]`` column (in ``like``'s dtype) of temperatures from a scalar or a ``[rows]`` tensor."""
    import torch

    t = torch.as_tensor(temperature, dtype=like.dtype, device=like.device)
    return (t.expand(rows) if t.dim() == 0 else t.to(like.dtype)).reshape(rows, 1)


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float | torch.Tensor
) -> torch.Tensor:
    """Hinton's term ``mean_i T_i^2 * KL(softmax(z_t/T_i) || softmax(z_s/T_i))``.

    ``temperature`` is a scalar or one temperature per row.
    """
    import torch.nn.functional as F

    s, t = upcast(student_logits), upcast(teacher_logits)
    temp = per_sample_temperature(temperature, s.shape[0], s)
    log_p_s = F.log_softmax(s / temp, dim=1)
    log_p_t = F.log_softmax(t / temp, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)
    return (kl * temp.squeeze(1) ** 2).mean()


def non_target_columns(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[B, K-1]`` class indices of every class except each row's label, in ascending order."""
    import torch

    ar = torch.arange(num_classes - 1, device=labels.device).unsqueeze(0)
    return ar + (ar >= labels.reshape(-1, 1)).long()


def _binary_log_probs(scaled: torch.Tensor, labels: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """``[B, 2]`` log-probabilities of (target, all non-targets) of softmax(scaled)."""
    import torch

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
    import torch

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


# ------------------------------------------------------------------ drop-in losses (stable API)
# The paper preset's temperatures (docs/method.md#presets): certain (low energy) 6, others 4, uncertain 2.
PAPER_TEMPERATURES = (6.0, 4.0, 2.0)


def energy_temperatures(
    energies: torch.Tensor,
    thresholds: Thresholds,
    temperatures: tuple[float, float, float] = PAPER_TEMPERATURES,
) -> torch.Tensor:
    """One temperature per row: ``temperatures[0]`` for the low-energy set (``thresholds.is_low``),
    ``temperatures[2]`` for the high-energy set (``is_high``), ``temperatures[1]`` for the others.

    The default is the paper preset (6 / 4 / 2); the released code's is ``(2.0, 4.0, 6.0)``.
    """
    import torch

    low_t, mid_t, high_t = (float(t) for t in temperatures)
    if min(low_t, mid_t, high_t) <= 0:
        raise ValueError(f"temperatures must be above 0, got {temperatures}")
    out = torch.full(energies.shape, mid_t, dtype=torch.float32, device=energies.device)
    out[thresholds.is_low(energies)] = low_t
    out[thresholds.is_high(energies)] = high_t
    return out


def energy_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    thresholds: Thresholds,
    temperatures: tuple[float, float, float] = PAPER_TEMPERATURES,
    energy_temperature: float = ENERGY_TEMPERATURE,
) -> torch.Tensor:
    """Energy KD's distillation term: :func:`kd_loss` at each row's temperature, chosen by the
    energy of the teacher's logits (``E = -T_E * logsumexp(z_t / T_E)``) against ``thresholds``.

    Add the cross-entropy yourself: ``0.1 * CE + 0.9 * energy_kd_loss(...)`` is ekd's default weighting.
    """
    temps = energy_temperatures(energy(teacher_logits.detach(), energy_temperature), thresholds, temperatures)
    return kd_loss(student_logits, teacher_logits, temps)


def energy_dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    thresholds: Thresholds,
    temperatures: tuple[float, float, float] = PAPER_TEMPERATURES,
    alpha: float = 1.0,
    beta: float = 8.0,
    energy_temperature: float = ENERGY_TEMPERATURE,
) -> torch.Tensor:
    """Energy DKD's distillation term: ``alpha * TCKD + beta * NCKD`` (:func:`dkd_terms`) at each
    row's energy temperature (as :func:`energy_kd_loss`).

    DKD's cross-entropy (weight 1) and its warm-up ``min(epoch / 20, 1)`` are the caller's.
    """
    temps = energy_temperatures(energy(teacher_logits.detach(), energy_temperature), thresholds, temperatures)
    tckd, nckd = dkd_terms(student_logits, teacher_logits, labels, temps)
    return alpha * tckd + beta * nckd

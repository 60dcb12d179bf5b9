"""Loss math shared by distillers and augmentations. Always computed in float32."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


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

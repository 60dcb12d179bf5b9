"""Beta(a, b) samples drawn only from an explicit ``torch.Generator``.

``torch.distributions.Beta`` samples through ``torch._standard_gamma``, which
offers no public generator argument: it would read the global RNG and break
"same seed => same mixes".  So Gamma variates are drawn here with the
Marsaglia-Tsang (2000) squeeze/rejection method from ``torch.randn`` /
``torch.rand`` (both generator-aware), vectorized over all rows, and
``Beta = G_a / (G_a + G_b)`` is formed in log space as
``sigmoid(log G_a - log G_b)`` so that small shapes (MixUp's 0.2, where
``G`` underflows float32) never give ``0/0``.

For shape ``k < 1`` the boost ``G(k) = G(k + 1) * U^(1/k)`` is used (in logs).
"""

from __future__ import annotations

import math

import torch

# Proposals drawn per row and round; Marsaglia-Tsang accepts > 95 % of proposals
# for shape >= 1, so a second round is needed for about one row in 10^5.
_PROPOSALS = 4


def _open_uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Uniform on (0, 1]: ``1 - U[0, 1)``, so its logarithm is always finite."""
    return 1.0 - torch.rand(shape, generator=generator, device=device, dtype=torch.float64)


def log_gamma_samples(
    shape_param: float, n: int, generator: torch.Generator, device: torch.device | str
) -> torch.Tensor:
    """``log`` of ``n`` independent Gamma(shape_param, 1) variates, float64 on ``device``."""
    if not shape_param > 0 or not math.isfinite(shape_param):
        raise ValueError(f"the Gamma shape must be a positive finite number, got {shape_param!r}")
    device = torch.device(device)
    boosted = shape_param < 1.0
    k = shape_param + 1.0 if boosted else shape_param
    d = k - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)

    log_g = torch.zeros(n, dtype=torch.float64, device=device)
    pending = torch.ones(n, dtype=torch.bool, device=device)
    while n and bool(pending.any()):
        # Fixed-shape draws for every row each round keep the stream independent of which rows wait.
        x = torch.randn((n, _PROPOSALS), generator=generator, device=device, dtype=torch.float64)
        u = _open_uniform((n, _PROPOSALS), generator, device)
        v = (1.0 + c * x) ** 3
        safe_v = v.clamp_min(torch.finfo(torch.float64).tiny)
        accept = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * safe_v + d * torch.log(safe_v))
        first = accept.to(torch.int8).argmax(dim=1, keepdim=True)  # first accepted proposal per row
        candidate = torch.log(d * safe_v.gather(1, first).squeeze(1))
        take = pending & accept.any(dim=1)
        log_g = torch.where(take, candidate, log_g)
        pending = pending & ~take
    if boosted:
        log_g = log_g + torch.log(_open_uniform((n,), generator, device)) / shape_param
    return log_g


def sample_beta(
    a: float, b: float, n: int, generator: torch.Generator, device: torch.device | str
) -> torch.Tensor:
    """``n`` independent Beta(a, b) samples, float32 in [0, 1], reproducible from ``generator``."""
    log_ga = log_gamma_samples(a, n, generator, device)
    log_gb = log_gamma_samples(b, n, generator, device)
    return torch.sigmoid(log_ga - log_gb).float()

"""The loss terms on mixed rows, checked against an independent float64 computation."""

from __future__ import annotations

import pytest
import torch
from ekd_plugins.augmentations.energy_mix import he_cutmix, mixup

from ekdcli.sdk.contracts import MixResult


def fake_mix(m: int, classes: int, seed: int) -> MixResult:
    g = torch.Generator().manual_seed(seed)
    return MixResult(
        images=torch.zeros(m, 1, 2, 2),
        labels_a=torch.randint(0, classes, (m,), generator=g),
        labels_b=torch.randint(0, classes, (m,), generator=g),
        lam=torch.rand(m, generator=g),
        rows=torch.arange(m),
        partner_rows=torch.arange(m).flip(0),
    )


def log_softmax64(z: torch.Tensor) -> torch.Tensor:
    z = z.double()
    shifted = z - z.max(dim=1, keepdim=True).values
    return shifted - shifted.exp().sum(dim=1, keepdim=True).log()


def kd64(s: torch.Tensor, t: torch.Tensor, temperature: float) -> float:
    log_ps = log_softmax64(s.double() / temperature)
    log_pt = log_softmax64(t.double() / temperature)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(dim=1)
    return float(temperature**2 * kl.mean())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mix_kd_is_weighted_kd_at_the_given_temperature(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    s = (torch.randn(6, 5, generator=g) * 3).to(dtype)
    t = (torch.randn(6, 5, generator=g) * 3).to(dtype)
    aug = he_cutmix(kd_weight=0.5, temperature=3.0)
    terms = aug.loss(s, t, fake_mix(6, 5, 1), epoch=1)
    assert set(terms) == {"mix_kd"}
    assert terms["mix_kd"].dtype == torch.float32
    assert float(terms["mix_kd"]) == pytest.approx(0.5 * kd64(s, t, 3.0), rel=1e-5, abs=1e-6)


def test_mixed_ce_is_the_lambda_weighted_cross_entropy() -> None:
    g = torch.Generator().manual_seed(2)
    s = torch.randn(7, 4, generator=g, requires_grad=True)
    t = torch.randn(7, 4, generator=g)
    mix = fake_mix(7, 4, 3)
    terms = mixup(mixed_ce="true").loss(s, t, mix, epoch=3)
    log_p = log_softmax64(s.detach())
    rows = torch.arange(7)
    ce_a = -log_p[rows, mix.labels_a]
    ce_b = -log_p[rows, mix.labels_b]
    lam = mix.lam.double()
    expected = float((lam * ce_a + (1 - lam) * ce_b).mean())
    assert float(terms["mix_ce"].detach()) == pytest.approx(expected, rel=1e-6)
    assert float(terms["mix_kd"].detach()) == pytest.approx(kd64(s.detach(), t, 4.0), rel=1e-5)
    (terms["mix_kd"] + terms["mix_ce"]).backward()
    assert s.grad is not None and bool(torch.isfinite(s.grad).all()) and float(s.grad.abs().sum()) > 0


def test_an_empty_mix_gives_zero_terms_that_backpropagate() -> None:
    s = torch.zeros(0, 5, requires_grad=True)
    terms = mixup(mixed_ce=True).loss(s, torch.zeros(0, 5), fake_mix(0, 5, 0), epoch=1)
    assert set(terms) == {"mix_kd", "mix_ce"}
    assert float(terms["mix_kd"].detach()) == 0.0 and float(terms["mix_ce"].detach()) == 0.0
    terms["mix_kd"].backward()
    assert s.grad is not None and s.grad.shape == (0, 5)

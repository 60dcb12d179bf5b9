"""CE, KD and DKD against float64 re-derivations; stability; logit standardization; gradients."""

from __future__ import annotations

import math

import distill_reference as ref
import pytest
import torch
from ekd_plugins.distillers.functional import dkd_terms, standardize_logits
from ekd_plugins.distillers.logit import make_ce, make_dkd, make_kd

from ekdcli.sdk.contracts import DistillBatch
from ekdcli.sdk.losses import kd_loss


def logits(rows: int, classes: int, seed: int, scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, classes, generator=g) * scale


def labels(rows: int, classes: int, seed: int) -> torch.Tensor:
    return torch.randint(0, classes, (rows,), generator=torch.Generator().manual_seed(seed))


def batch(s: torch.Tensor, t: torch.Tensor | None, y: torch.Tensor, epoch: int = 30) -> DistillBatch:
    return DistillBatch(s, t, y, torch.arange(s.shape[0]), epoch)


def test_ce_has_no_teacher_and_matches_cross_entropy() -> None:
    d = make_ce()
    s, y = logits(6, 5, 0), labels(6, 5, 1)
    out = d(batch(s, None, y))
    assert d.needs_teacher is False and d.needs_energy is False
    assert set(out) == {"ce"}
    assert out["ce"].item() == pytest.approx(ref.ce(s, y), rel=1e-5)


@pytest.mark.parametrize("t", [1.0, 4.0, 7.5])
@pytest.mark.parametrize("classes", [2, 10, 100])
def test_kd_terms_match_formula(t: float, classes: int) -> None:
    s, te, y = logits(8, classes, 2), logits(8, classes, 3), labels(8, classes, 4)
    out = make_kd(t=t, w_ce=0.3, w_kd=0.7)(batch(s, te, y))
    assert set(out) == {"ce", "kd"}
    assert out["ce"].item() == pytest.approx(0.3 * ref.ce(s, y), rel=1e-5)
    assert out["kd"].item() == pytest.approx(0.7 * ref.kd(s, te, t), rel=1e-4)


def test_kd_defaults_are_the_papers() -> None:
    d = make_kd()
    assert d.describe() == {
        "method": "kd",
        "temperature_rule": "fixed",
        "t": 4.0,
        "w_ce": 0.1,
        "w_kd": 0.9,
        "logit_standardize": False,
    }


def test_kd_loss_per_sample_temperature_matches_formula() -> None:
    s, te = logits(5, 7, 5), logits(5, 7, 6)
    temps = torch.tensor([1.0, 2.0, 4.0, 6.0, 9.0])
    assert kd_loss(s, te, temps).item() == pytest.approx(ref.kd(s, te, temps), rel=1e-4)


@pytest.mark.parametrize(("alpha", "beta", "t"), [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0), (2.0, 6.0, 3.0)])
@pytest.mark.parametrize("classes", [2, 5, 100])
def test_dkd_terms_match_formula(alpha: float, beta: float, t: float, classes: int) -> None:
    s, te, y = logits(6, classes, 7), logits(6, classes, 8), labels(6, classes, 9)
    out = make_dkd(alpha=alpha, beta=beta, t=t, warmup=20, w_ce=1.0)(batch(s, te, y, epoch=40))
    tckd, nckd = ref.dkd(s, te, y, t)
    assert set(out) == {"ce", "tckd", "nckd"}
    assert out["ce"].item() == pytest.approx(ref.ce(s, y), rel=1e-5)
    assert out["tckd"].item() == pytest.approx(alpha * tckd, rel=1e-4, abs=1e-7)
    assert out["nckd"].item() == pytest.approx(beta * nckd, rel=1e-4, abs=1e-7)


def test_dkd_with_two_classes_has_zero_nckd_and_tckd_equals_kd() -> None:
    s, te, y = logits(6, 2, 10), logits(6, 2, 11), labels(6, 2, 12)
    tckd, nckd = dkd_terms(s, te, y, 4.0)
    assert nckd.item() == 0.0
    # with two classes the binary (target, other) split is the whole distribution
    assert tckd.item() == pytest.approx(ref.kd(s, te, 4.0), rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dkd_is_finite_and_correct_for_extreme_logits(dtype: torch.dtype) -> None:
    s = (logits(6, 100, 13, scale=1.0) * 1e4).to(dtype)
    te = (logits(6, 100, 14, scale=1.0) * 1e4).to(dtype)
    y = labels(6, 100, 15)
    s.requires_grad_(True)
    tckd, nckd = dkd_terms(s, te, y, 4.0)
    assert tckd.dtype == torch.float32 and nckd.dtype == torch.float32
    assert math.isfinite(tckd.item()) and math.isfinite(nckd.item())
    (tckd + nckd).backward()
    assert torch.isfinite(s.grad.float()).all()
    want_t, want_n = ref.dkd_logspace(s, te, y, 4.0)
    assert tckd.item() == pytest.approx(want_t, rel=1e-4)
    assert nckd.item() == pytest.approx(want_n, rel=1e-4)


def test_dkd_extreme_two_classes_finite() -> None:
    s = torch.tensor([[1e4, -1e4], [-1e4, 1e4]])
    te = torch.tensor([[-1e4, 1e4], [1e4, -1e4]])
    tckd, nckd = dkd_terms(s, te, torch.tensor([0, 0]), 4.0)
    assert nckd.item() == 0.0
    assert tckd.item() == pytest.approx(ref.dkd_logspace(s, te, torch.tensor([0, 0]), 4.0)[0], rel=1e-5)


@pytest.mark.parametrize(
    ("epoch", "warmup", "factor"), [(1, 20, 0.05), (5, 20, 0.25), (20, 20, 1.0), (33, 20, 1.0)]
)
def test_dkd_warmup_factor(epoch: int, warmup: float, factor: float) -> None:
    s, te, y = logits(4, 6, 16), logits(4, 6, 17), labels(4, 6, 18)
    out = make_dkd(beta=3.0, warmup=warmup)(batch(s, te, y, epoch=epoch))
    tckd, nckd = ref.dkd(s, te, y, 4.0)
    assert out["tckd"].item() == pytest.approx(factor * tckd, rel=1e-4)
    assert out["nckd"].item() == pytest.approx(factor * 3.0 * nckd, rel=1e-4)
    assert out["ce"].item() == pytest.approx(ref.ce(s, y), rel=1e-5)  # CE is never warmed up


def test_dkd_without_warmup_is_full_strength_at_epoch_one() -> None:
    s, te, y = logits(4, 6, 19), logits(4, 6, 20), labels(4, 6, 21)
    out = make_dkd(warmup=0)(batch(s, te, y, epoch=1))
    assert out["tckd"].item() == pytest.approx(ref.dkd(s, te, y, 4.0)[0], rel=1e-4)


def test_standardize_matches_zscore_with_unbiased_std() -> None:
    z = logits(4, 9, 22)
    assert torch.allclose(standardize_logits(z).double(), torch.from_numpy(ref.standardize(z)), atol=1e-5)


def test_kd_logit_standardization_uses_zscores_and_raw_ce() -> None:
    s, te, y = logits(6, 10, 23), logits(6, 10, 24, scale=8.0), labels(6, 10, 25)
    out = make_kd(logit_standardize=True, t=2.0)(batch(s, te, y))
    want = 0.9 * ref.kd(ref.standardize(s), ref.standardize(te), 2.0)
    assert out["kd"].item() == pytest.approx(want, rel=1e-4)
    assert out["ce"].item() == pytest.approx(0.1 * ref.ce(s, y), rel=1e-5)
    # z-scores ignore each row's offset and (positive) scale of the logits
    moved = make_kd(logit_standardize=True, t=2.0)(batch(s * 3 + 5, te * 0.5 - 2, y))
    assert moved["kd"].item() == pytest.approx(out["kd"].item(), rel=1e-4)


def test_dkd_logit_standardization() -> None:
    s, te, y = logits(5, 8, 26), logits(5, 8, 27), labels(5, 8, 28)
    out = make_dkd(logit_standardize="true", beta=8.0)(batch(s, te, y, epoch=30))
    tckd, nckd = ref.dkd(ref.standardize(s), ref.standardize(te), y, 4.0)
    assert out["tckd"].item() == pytest.approx(tckd, rel=1e-4)
    assert out["nckd"].item() == pytest.approx(8.0 * nckd, rel=1e-4)


def test_gradcheck_dkd_terms_per_sample_temperature() -> None:
    s = logits(4, 5, 29).double().requires_grad_(True)
    te = logits(4, 5, 30).double().requires_grad_(True)
    y, temps = labels(4, 5, 31), torch.tensor([1.0, 2.0, 4.0, 6.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: torch.stack(dkd_terms(a, b, y, temps)), (s, te))


def test_gradcheck_kd_loss_per_sample_temperature() -> None:
    # float64 logits stay float64 (only low precision is upcast), so the default tolerances apply
    s = logits(4, 5, 32).double().requires_grad_(True)
    te = logits(4, 5, 33).double().requires_grad_(True)
    temps = torch.tensor([1.0, 2.0, 4.0, 6.0])  # float32, as the temperature rule hands them out
    assert kd_loss(s, te, temps).dtype == torch.float64
    assert torch.autograd.gradcheck(lambda a, b: kd_loss(a, b, temps), (s, te))


def test_gradcheck_standardized_kd_and_dkd() -> None:
    s = logits(4, 6, 34).double().requires_grad_(True)
    te, y = logits(4, 6, 35).double(), labels(4, 6, 36)
    kd, dkd = make_kd(logit_standardize=True), make_dkd(logit_standardize=True, warmup=0)
    assert torch.autograd.gradcheck(lambda a: sum(kd(batch(a, te, y)).values()), (s,))
    assert torch.autograd.gradcheck(lambda a: sum(dkd(batch(a, te, y)).values()), (s,))

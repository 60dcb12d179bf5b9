"""The generator-driven Beta sampler: right distribution, reproducible, global RNG untouched."""

from __future__ import annotations

import pytest
import torch
from ekd_plugins.augmentations.sampling import log_gamma_samples, sample_beta
from scipy import stats


@pytest.mark.parametrize(("a", "b"), [(1.0, 1.0), (0.2, 0.2), (2.0, 5.0), (0.5, 3.0)])
def test_beta_samples_follow_the_beta_distribution(a: float, b: float) -> None:
    generator = torch.Generator().manual_seed(1234)
    samples = sample_beta(a, b, 4000, generator, "cpu")
    assert samples.dtype == torch.float32 and samples.shape == (4000,)
    assert bool(((samples >= 0) & (samples <= 1)).all())
    # Kolmogorov-Smirnov against scipy's Beta CDF; a fixed seed keeps this deterministic.
    assert stats.kstest(samples.double().numpy(), "beta", args=(a, b)).pvalue > 1e-3
    mean = a / (a + b)
    assert abs(float(samples.double().mean()) - mean) < 0.03


def test_gamma_samples_have_the_gamma_mean_and_variance() -> None:
    generator = torch.Generator().manual_seed(7)
    for shape in (0.3, 1.0, 4.5):
        g = log_gamma_samples(shape, 20000, generator, "cpu").exp()
        assert abs(float(g.mean()) - shape) < 0.06 * max(shape, 1.0)
        assert abs(float(g.var()) - shape) < 0.12 * max(shape, 1.0)


def test_same_seed_same_samples_and_different_seed_different_samples() -> None:
    first = sample_beta(0.2, 0.2, 64, torch.Generator().manual_seed(3), "cpu")
    again = sample_beta(0.2, 0.2, 64, torch.Generator().manual_seed(3), "cpu")
    other = sample_beta(0.2, 0.2, 64, torch.Generator().manual_seed(4), "cpu")
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_the_global_rng_is_not_consumed() -> None:
    torch.manual_seed(11)
    state = torch.get_rng_state()
    sample_beta(1.0, 1.0, 32, torch.Generator().manual_seed(0), "cpu")
    assert torch.equal(state, torch.get_rng_state())


def test_tiny_shapes_stay_finite_and_inside_the_unit_interval() -> None:
    samples = sample_beta(0.02, 0.02, 2000, torch.Generator().manual_seed(5), "cpu")
    assert bool(torch.isfinite(samples).all())
    assert bool(((samples >= 0) & (samples <= 1)).all())
    # Beta(0.02, 0.02) puts almost all mass next to 0 and 1.
    assert float(((samples < 0.01) | (samples > 0.99)).float().mean()) > 0.8


def test_zero_samples_and_bad_shapes() -> None:
    assert sample_beta(1.0, 1.0, 0, torch.Generator(), "cpu").shape == (0,)
    with pytest.raises(ValueError, match="positive finite"):
        sample_beta(0.0, 1.0, 3, torch.Generator(), "cpu")

"""Which rows HE-DA and its variants mix: high / low / mixed energy sets, static and online."""

from __future__ import annotations

import math

import pytest
import torch
from ekd_plugins.augmentations.energy_mix import (
    cutmix,
    he_cutmix,
    he_mixup,
    le_cutmix,
    mixed_cutmix,
    mixed_mixup,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from ekdcli.sdk.contracts import EnergyContext
from ekdcli.sdk.mixing import apply_mix
from ekdcli.util.errors import UsageError

FACTORIES = {"high": he_cutmix, "low": le_cutmix, "mixed": mixed_cutmix}


def context(energies: list[float] | torch.Tensor) -> EnergyContext:
    return EnergyContext(
        energies=torch.as_tensor(energies, dtype=torch.float32), energy_temperature=4.0, fingerprint="t"
    )


def expected_set(energies: torch.Tensor, side: str, rate: float) -> torch.Tensor:
    """The selected samples for distinct energies, by ranking (independent of thresholds)."""
    n = energies.numel()
    if rate >= 1.0:
        return torch.ones(n, dtype=torch.bool)
    order = torch.argsort(energies.double())
    chosen = torch.zeros(n, dtype=torch.bool)
    k = math.floor(n * rate)
    half = math.floor(n * rate / 2)
    if side == "high":
        chosen[order[n - k :]] = k > 0
    elif side == "low":
        chosen[order[:k]] = True
    else:
        chosen[order[:half]] = True
        chosen[order[n - half :]] = half > 0
    return chosen


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    n=st.integers(4, 60),
    batch=st.integers(1, 16),
    rate=st.one_of(st.just(1.0), st.floats(0.01, 1.0)),
    side=st.sampled_from(["high", "low", "mixed"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_only_samples_in_the_selected_set_are_ever_mixed(data, n, batch, rate, side, seed) -> None:  # type: ignore[no-untyped-def]
    ranks = torch.tensor(data.draw(st.permutations(list(range(n)))), dtype=torch.float32)
    scale = data.draw(st.floats(0.01, 100.0))
    energies = ranks * scale - 50.0  # distinct energies in random order
    aug = FACTORIES[side](rate=rate, mode=data.draw(st.sampled_from(["extra", "replace"])))
    aug.setup(context(energies))
    indices = torch.tensor(data.draw(st.lists(st.integers(0, n - 1), min_size=batch, max_size=batch)))

    mask = aug.select(indices, None)
    assert torch.equal(mask, expected_set(energies, side, rate)[indices])

    images = torch.randn(batch, 1, 6, 5, generator=torch.Generator().manual_seed(seed))
    mix = aug.mix(images, indices, mask, torch.Generator().manual_seed(seed))
    assert torch.equal(mix.rows, torch.nonzero(mask).squeeze(1))
    assert bool(expected_set(energies, side, rate)[indices[mix.rows]].all())

    applied = apply_mix(images, mix, aug.mode)
    seen, mixed = applied.images, applied.mixed_mask()
    if aug.mode == "replace":
        assert seen.shape[0] == batch and torch.equal(mixed, mask)
        assert torch.equal(seen[~mask], images[~mask])  # unselected rows are untouched
    else:
        assert seen.shape[0] == batch + int(mask.sum())
        assert torch.equal(seen[:batch], images) and int(mixed.sum()) == int(mask.sum())


@pytest.mark.parametrize("factory", [he_cutmix, le_cutmix, mixed_cutmix, he_mixup, mixed_mixup])
@pytest.mark.parametrize("source", ["static", "online"])
def test_rate_one_selects_everything_even_with_ties_and_odd_sizes(factory, source) -> None:  # type: ignore[no-untyped-def]
    energies = torch.tensor([3.0, 3.0, 3.0, 1.0, 5.0, 3.0, 3.0])
    aug = factory(rate=1.0, source=source)
    aug.setup(context(energies))
    indices = torch.arange(7)
    assert bool(aug.select(indices, energies if source == "online" else None).all())
    assert aug.describe()["selects_all"] is True


def test_plain_cutmix_needs_no_energy_and_selects_every_row() -> None:
    aug = cutmix()
    assert aug.needs_energy is False
    aug.setup(None)
    assert bool(aug.select(torch.tensor([5, 1, 9]), None).all())


def test_low_side_rule_released_is_strict_and_paper_includes_ties() -> None:
    energies = torch.tensor([0.0, 1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    # rate 0.3, N 10: E_low = sorted[3] = 1.0; released E < 1 -> {0}; paper E <= 1 -> {0, 1, 2, 3}.
    released = le_cutmix(rate=0.3)
    paper = le_cutmix(rate=0.3, low_rule="paper")
    released.setup(context(energies))
    paper.setup(context(energies))
    indices = torch.arange(10)
    assert released.select(indices, None).nonzero().flatten().tolist() == [0]
    assert paper.select(indices, None).nonzero().flatten().tolist() == [0, 1, 2, 3]


def test_mixed_takes_half_the_rate_from_each_end() -> None:
    energies = torch.tensor([float(v) for v in [9, 0, 8, 1, 7, 2, 6, 3, 5, 4]])
    aug = mixed_cutmix(rate=0.4)  # 2 lowest (0, 1) + 2 highest (8, 9)
    aug.setup(context(energies))
    picked = aug.select(torch.arange(10), None)
    assert sorted(energies[picked].tolist()) == [0.0, 1.0, 8.0, 9.0]
    assert aug.describe()["selected_fraction"] == pytest.approx(0.4)


def test_online_selection_compares_batch_energies_with_dataset_thresholds() -> None:
    dataset = torch.arange(100, dtype=torch.float32)
    high = he_cutmix(rate=0.25, source="online")  # E_high = sorted[100 - 25 - 1] = 74
    low = le_cutmix(rate=0.25, source="online")  # E_low = sorted[25] = 25
    high.setup(context(dataset))
    low.setup(context(dataset))
    assert high.describe()["thresholds"]["high"] == 74.0 and low.describe()["thresholds"]["low"] == 25.0
    indices = torch.zeros(5, dtype=torch.long)  # online ignores the dataset energies of the indices
    online = torch.tensor([73.9, 74.0, 74.1, 200.0, -5.0])
    assert high.select(indices, online).tolist() == [False, False, True, True, False]
    assert low.select(indices, online).tolist() == [False, False, False, False, True]
    with pytest.raises(ValueError, match="online"):
        high.select(indices, None)


def test_static_selection_uses_dataset_energies_not_the_batch_ones() -> None:
    aug = he_cutmix(rate=0.1)
    aug.setup(context(torch.arange(20, dtype=torch.float32)))  # high set: indices 18, 19
    indices = torch.tensor([19, 0, 18, 5])
    misleading = torch.tensor([-1.0, 100.0, -1.0, 100.0])
    assert aug.select(indices, misleading).tolist() == [True, False, True, False]


def test_energy_variants_refuse_to_run_without_scores() -> None:
    aug = he_cutmix()
    with pytest.raises(UsageError, match="ekd score"):
        aug.setup(None)
    with pytest.raises(RuntimeError, match="setup"):
        aug.select(torch.arange(3), None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_static_mask_lives_on_the_energy_device() -> None:
    aug = he_cutmix(rate=0.5)
    aug.setup(context(torch.arange(10, dtype=torch.float32).cuda()))
    mask = aug.select(torch.tensor([9, 0], device="cuda"), None)
    assert mask.device.type == "cuda" and mask.tolist() == [True, False]

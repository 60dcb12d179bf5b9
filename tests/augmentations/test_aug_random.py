"""The random-selection control: ``cutmix`` / ``mixup`` at ``rate`` < 1 mix a random fraction of each batch,
drawn from the engine's augmentation generator (reproducible, and restored on resume)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from ekd_plugins.augmentations.energy_mix import cutmix, mixup

from ekdcli.engine.loop import fit
from ekdcli.engine.options import EngineOptions
from ekdcli.engine.recipe import Recipe
from ekdcli.engine.testing import TinyNet, synthetic_dataset
from ekdcli.method.objective import DistillObjective
from ekdcli.sdk.plugins import registry


def mixed_rows(aug: Any, batch: int, seed: int) -> list[int]:
    images = torch.rand(batch, 3, 8, 8, generator=torch.Generator().manual_seed(100))
    labels = torch.arange(batch) % 4
    aug.setup(None)
    mask = aug.select(torch.arange(batch), None)
    generator = torch.Generator().manual_seed(seed)
    return aug.mix(images, labels, mask, generator).rows.tolist()


@pytest.mark.parametrize(("batch", "rate"), [(16, 0.5), (10, 0.25), (7, 0.3), (64, 0.1), (5, 0.05)])
def test_each_batch_mixes_round_rate_times_its_size(batch: int, rate: float) -> None:
    expected = math.floor(rate * batch + 0.5)  # 10 x 0.25 = 2.5 -> 3; 5 x 0.05 = 0.25 -> 0
    for seed in range(5):
        rows = mixed_rows(cutmix(rate=rate), batch, seed)
        assert len(rows) == expected and len(set(rows)) == expected
        assert all(0 <= r < batch for r in rows)


def test_the_rows_are_uniformly_random_and_every_row_gets_its_share() -> None:
    batch, rate, draws = 8, 0.25, 800
    counts = torch.zeros(batch)
    generator = torch.Generator().manual_seed(0)
    aug = cutmix(rate=rate)
    images, labels = torch.rand(batch, 3, 4, 4), torch.zeros(batch, dtype=torch.long)
    for _ in range(draws):
        mask = aug.select(torch.arange(batch), None)
        counts[aug.mix(images, labels, mask, generator).rows] += 1
    share = counts / draws
    # each row: Binomial(800, 0.25): sd 0.0153; 5 sd either side
    assert torch.all((share - rate).abs() < 0.077), share


def test_the_same_generator_state_gives_the_same_rows_and_the_global_rng_is_untouched() -> None:
    before = torch.get_rng_state()
    first = [mixed_rows(mixup(rate=0.5), 32, seed) for seed in range(4)]
    again = [mixed_rows(mixup(rate=0.5), 32, seed) for seed in range(4)]
    assert first == again
    assert len({tuple(rows) for rows in first}) == 4  # different seeds, different rows
    assert torch.equal(torch.get_rng_state(), before)


def test_without_a_rate_every_row_is_mixed_and_nothing_extra_is_drawn() -> None:
    """Rate 1.0 (the default, "CutMix 100%") draws no subset: the mixes equal those made before the
    control existed, i.e. cutmix of the full mask from the same generator state."""
    from ekd_plugins.augmentations import mixing

    images, labels = torch.rand(12, 3, 8, 8), torch.arange(12) % 3
    full = torch.ones(12, dtype=torch.bool)
    ours = cutmix().mix(images, labels, full, torch.Generator().manual_seed(3))
    plain = mixing.cutmix(images, labels, full, torch.Generator().manual_seed(3), 1.0)
    assert ours.rows.tolist() == list(range(12))
    assert torch.equal(ours.images, plain.images) and torch.equal(ours.partner_rows, plain.partner_rows)


def test_describe_names_the_random_selection() -> None:
    described = cutmix(rate=0.5).describe()
    assert (described["selection"], described["rate"], described["selects_all"]) == ("random", 0.5, False)
    assert cutmix().describe()["selection"] == "all" and cutmix().describe()["selects_all"] is True


RECIPE = Recipe(epochs=2, batch_size=32, lr=0.1, milestones=(2,))  # 128 samples: 4 steps per epoch


def _fit(run_dir: Path, **kwargs: Any) -> Any:
    torch.manual_seed(1)
    teacher = TinyNet()
    torch.manual_seed(0)
    student = TinyNet()
    distiller = registry("distillers").get("kd").build()
    objective = DistillObjective(teacher, distiller, cutmix(rate=0.5))
    options = EngineOptions(device="cpu", precision="fp32", quiet=True, seed=5)
    data = synthetic_dataset(train=128, test=32)
    return fit(student, data, objective, RECIPE, options, run_dir, **kwargs)


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
def test_a_run_mixes_half_of_each_batch_and_resumes_bitwise(tmp_path: Path) -> None:
    straight = _fit(tmp_path / "a")
    assert [r["stats"]["augmented"] for r in straight.history] == [64.0, 64.0]  # 4 steps x 16 rows
    again = _fit(tmp_path / "again")
    stopped = _fit(tmp_path / "b", stop_after_epoch=1)
    assert stopped.epochs_run == 1
    resumed = _fit(tmp_path / "b", resume=True)
    for other in (again, resumed):
        assert other.last_state.keys() == straight.last_state.keys()
        assert all(torch.equal(other.last_state[k], straight.last_state[k]) for k in straight.last_state)
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["objective"]["augmentation"]["selection"] == "random"


def test_distill_routes_rate_to_plain_cutmix() -> None:
    import dataclasses

    from ekdcli.config import Config
    from ekdcli.jobs.plan import build_losses, plan_methods

    config = dataclasses.replace(Config(), method="kd", augment="cutmix", rate=0.3)
    plan = plan_methods(config)
    assert plan.augmentation_options["rate"] == 0.3
    _, aug = build_losses(config, plan, ("resnet32", "resnet8"))
    assert aug.describe()["selection"] == "random" and aug.options.rate == 0.3

"""Learning-rate schedules against hand-computed values, recipes and their validation."""

from __future__ import annotations

import math

import pytest
import torch

from ekdcli.config import resolve
from ekdcli.engine.recipe import RECIPES, Recipe, build_optimizer, build_scheduler, lr_factor, preset
from ekdcli.jobs.common import describe_recipe, resolve_recipe
from ekdcli.util.errors import UsageError


def lrs_seen(recipe: Recipe, steps_per_epoch: int, steps: int) -> list[float]:
    """The learning rate each optimizer step actually uses."""
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe, steps_per_epoch)
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_step_decay_counts_1_based_milestones() -> None:
    recipe = Recipe(epochs=8, lr=0.1, milestones=(3, 6), gamma=0.1)
    seen = lrs_seen(recipe, steps_per_epoch=4, steps=32)
    # epochs 1-3 (steps 0-11) at 0.1, epochs 4-6 (steps 12-23) at 0.01, epochs 7-8 at 0.001
    expected = [0.1] * 12 + [0.01] * 12 + [0.001] * 8
    assert seen == pytest.approx(expected, rel=1e-12)


def test_linear_warmup_then_step() -> None:
    recipe = Recipe(epochs=4, lr=0.2, milestones=(2,), warmup_epochs=1)
    seen = lrs_seen(recipe, steps_per_epoch=4, steps=12)
    expected = [0.05, 0.1, 0.15, 0.2, 0.2, 0.2, 0.2, 0.2, 0.02, 0.02, 0.02, 0.02]
    assert seen == pytest.approx(expected, rel=1e-12)


def test_cosine_without_warmup() -> None:
    recipe = Recipe(epochs=2, lr=1.0, schedule="cosine")
    seen = lrs_seen(recipe, steps_per_epoch=5, steps=10)
    assert seen[0] == pytest.approx(1.0)
    assert seen[2] == pytest.approx(0.5 * (1 + 0.8090169943749475))  # cos(pi/5)
    assert seen[5] == pytest.approx(0.5)
    assert seen[9] == pytest.approx(0.5 * (1 + math.cos(0.9 * math.pi)))
    assert lr_factor(recipe, 10, 5) == pytest.approx(0.0, abs=1e-15)


def test_cosine_after_warmup() -> None:
    recipe = Recipe(epochs=3, lr=1.0, schedule="cosine", warmup_epochs=1)
    # 2 warm-up steps, then cosine over the remaining 4 steps.
    expected = [0.5, 1.0, 1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))]
    assert lrs_seen(recipe, steps_per_epoch=2, steps=6) == pytest.approx(expected, rel=1e-12)


def test_named_recipes_match_the_papers() -> None:
    cifar, energy, imagenet = RECIPES["cifar"], RECIPES["cifar-energy"], RECIPES["imagenet"]
    assert (cifar.epochs, cifar.batch_size, cifar.lr, cifar.weight_decay) == (240, 64, 0.05, 5e-4)
    assert cifar.milestones == (150, 180, 210) and cifar.momentum == 0.9
    assert energy.epochs == 360 and energy.milestones == (150, 180, 210, 240, 270, 300)
    assert (imagenet.epochs, imagenet.batch_size, imagenet.lr, imagenet.weight_decay) == (100, 512, 0.2, 1e-4)
    assert imagenet.milestones == (30, 60, 90)
    for recipe in RECIPES.values():
        recipe.validate()


def test_optimizer_is_sgd_with_recipe_values() -> None:
    recipe = Recipe(lr=0.03, momentum=0.8, weight_decay=1e-3, nesterov=True)
    group = build_optimizer(torch.nn.Linear(3, 2), recipe).param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (
        0.03,
        0.8,
        1e-3,
        True,
    )


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"lr": -0.1}, "learning rate must be positive"),
        ({"schedule": "linear"}, "schedule must be one of step, cosine"),
        ({"warmup_epochs": 5, "epochs": 5}, "warm-up epochs"),
        ({"grad_clip": 0.0}, "grad clip must be positive"),
    ],
)
def test_bad_recipe_is_a_usage_error(changes: dict, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        Recipe().with_overrides(**changes)


def test_overrides_ignore_none() -> None:
    recipe = RECIPES["cifar"].with_overrides(lr=0.01, epochs=None)
    assert recipe.lr == 0.01 and recipe.epochs == 240
    assert RECIPES["cifar"].lr == 0.05  # the named recipe is untouched


def test_presets_take_the_learning_rate_a_model_hints_for_them() -> None:
    from ekdcli.sdk.plugins import registry

    for name in ("cifar", "cifar-energy"):
        for model in ("mobilenetv2", "shufflev1", "shufflev2"):
            small = preset(name, registry("models").get(model).info["recipe_lr"])
            assert small.lr == 0.01 and small.epochs == RECIPES[name].epochs
        assert "recipe_lr" not in registry("models").get("resnet8x4").info
        assert preset(name, None).lr == preset(name).lr == 0.05
    assert preset("imagenet", registry("models").get("mobilenetv2").info["recipe_lr"]).lr == 0.2
    assert RECIPES["cifar"].lr == 0.05  # the table itself is untouched


class _Data:
    name, info = "cifar100", {}


def test_resolve_recipe_applies_the_small_student_lr_unless_one_is_given() -> None:
    config = resolve({"recipe": "cifar"})
    assert resolve_recipe(config, _Data(), "mv2").lr == 0.01  # an alias of mobilenetv2
    assert resolve_recipe(config, _Data(), "shufflev2").lr == 0.01
    assert resolve_recipe(config, _Data(), "resnet8").lr == 0.05
    assert resolve_recipe(config, _Data(), "weights/student.safetensors").lr == 0.05
    assert resolve_recipe(config, _Data()).lr == 0.05
    assert resolve_recipe(resolve({"recipe": "cifar", "lr": 0.03}), _Data(), "mv2").lr == 0.03
    assert resolve_recipe(resolve({"recipe": "cifar", "train": {"lr": 0.02}}), _Data(), "mv2").lr == 0.02


def test_epochs_scale_the_recipes_milestones_unless_milestones_are_given() -> None:
    # 150,180,210 of 240 epochs at the same fractions of 5: 3.125, 3.75, 4.375 -> 3, 4, 4
    config = resolve({"recipe": "cifar", "epochs": 5})
    short = resolve_recipe(config, _Data())
    assert (short.epochs, short.milestones) == (5, (3, 4, 4))
    # recorded for the run's config.toml: resuming with more epochs keeps the run's schedule
    assert (
        config.train["milestones"] == [3, 4, 4]
        and config.sources["train.milestones"] == "scaled with epochs 5"
    )
    assert lr_factor(short, 4, 1) == pytest.approx(0.05 * 0.1**3 / 0.05)  # the recipe's final rate at the end
    assert "x0.1 at 3,4,4" in describe_recipe(short)
    tabled = resolve_recipe(resolve({"recipe": "cifar", "train": {"epochs": 120}}), _Data())
    assert tabled.milestones == (75, 90, 105)
    given = resolve_recipe(resolve({"recipe": "cifar", "epochs": 5, "train": {"milestones": [2]}}), _Data())
    assert given.milestones == (2,)
    assert resolve_recipe(resolve({"recipe": "cifar", "epochs": 240}), _Data()).milestones == (150, 180, 210)
    one = resolve_recipe(resolve({"recipe": "cifar", "epochs": 1}), _Data())
    assert one.milestones == (1, 1, 1)


def test_adamw_is_chosen_by_the_recipe_with_cosine_and_warm_up() -> None:
    recipe = resolve_recipe(
        resolve(
            {"recipe": "cifar", "train": {"optimizer": "adamw", "schedule": "cosine", "warmup_epochs": 1}}
        ),
        _Data(),
    )
    optimizer = build_optimizer(torch.nn.Linear(3, 2), recipe)
    assert isinstance(optimizer, torch.optim.AdamW)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["betas"]) == (0.05, 5e-4, (0.9, 0.999))
    assert "AdamW lr 0.05 wd 0.0005, cosine schedule (warm-up 1 epochs)" in describe_recipe(recipe)
    assert isinstance(build_optimizer(torch.nn.Linear(3, 2), RECIPES["cifar"]), torch.optim.SGD)
    with pytest.raises(UsageError, match="optimizer must be one of sgd, adamw, got 'adam'"):
        Recipe(optimizer="adam").validate()


def test_the_weight_average_follows_its_formula() -> None:
    from ekdcli.engine.ema import WeightAverage

    model = torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([1.0, 2.0]))
    average = WeightAverage(model, 0.75)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([5.0, 6.0]))
    model.num_batches_tracked += 3
    average.update(model)
    # 0.75 * old + 0.25 * new, per element; the integer step counter is copied
    assert average.model.weight.tolist() == [0.75 * 1 + 0.25 * 5, 0.75 * 2 + 0.25 * 6]
    assert int(average.model.num_batches_tracked) == 3
    assert not average.model.weight.requires_grad
    with pytest.raises(UsageError, match=r"ema \(the moving average's decay\) must be in \[0, 1\), got 1.0"):
        Recipe(ema=1.0).validate()

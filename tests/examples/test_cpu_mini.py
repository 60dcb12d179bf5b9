"""examples/cpu-mini: the teacher config, the campaign's twelve variants (they plan, share their settings,
and `ekd sweep --dry-run` lays them out), and results.py's verdicts."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ekdcli.config import resolve
from ekdcli.jobs.common import resolve_recipe
from ekdcli.jobs.plan import build_losses, plan_methods

HERE = Path(__file__).resolve().parents[2] / "examples" / "cpu-mini"
VARIANTS = {
    "ce": ("ce", None, None),
    "kd": ("kd", None, None),
    "dkd": ("dkd", None, None),
    "energy_kd-official": ("energy_kd", None, "official"),
    "energy_kd-paper": ("energy_kd", None, "paper"),
    "energy_dkd": ("energy_dkd", None, "official"),
    "kd-he_cutmix50": ("kd", "he-cutmix", None),
    "kd-cutmix50-random": ("kd", "cutmix", None),
    "fitnet": ("fitnet", None, None),
    "at": ("at", None, None),
    "crd": ("crd", None, None),
    "reviewkd": ("reviewkd", None, None),
}
FEATURE_METHODS = ("fitnet", "at", "crd", "reviewkd")  # they read the teacher's maps: no teacher cache


def test_the_teacher_trains_on_every_image() -> None:
    config = resolve(config_file=HERE / "teacher.toml")
    assert (config.data, config.model, config.limit_train) == ("cifar100", "resnet20", None)
    recipe = resolve_recipe(config, SimpleNamespace(info={}, name="cifar100"), "resnet20")
    assert (recipe.epochs, recipe.milestones) == (3, (2,))


def test_the_campaign_variants_share_their_settings_and_plan() -> None:
    files = sorted((HERE / "campaign").glob("*.toml"))
    assert {f.stem for f in files} == set(VARIANTS)
    for file in files:
        config = resolve(config_file=file)
        assert (config.data, config.teacher, config.student) == ("cifar100", "resnet20", "resnet8")
        assert (config.limit_train, config.teacher_cache) == (10000, file.stem not in FEATURE_METHODS)
        recipe = resolve_recipe(config, SimpleNamespace(info={}, name="cifar100"), "resnet8")
        assert (recipe.epochs, recipe.milestones, recipe.eval_every) == (4, (3,), 4)
        method, augment, preset = VARIANTS[file.stem]
        plan = plan_methods(config)
        distiller, augmentation = build_losses(config, plan, ("resnet20", "resnet8"))
        described = distiller.describe()
        assert described["method"] == method and described.get("preset") == preset
        if augment is None:
            assert augmentation is None
        else:
            assert augmentation.describe()["augment"] == augment and augmentation.options.rate == 0.5
        if method in ("dkd", "energy_dkd"):
            assert described.get("warmup", distiller.warmup) == 1
        if method == "crd":  # at most 9,900 negatives of other classes among 10,000 images
            assert config.distiller["nce_k"] == 4096
        if method == "reviewkd":
            assert config.distiller["warmup"] == 1


def test_the_sweep_plans_36_runs_and_the_scores(ekd: Any, tmp_path: Path) -> None:
    files = [str(f) for f in sorted((HERE / "campaign").glob("*.toml"))]
    code, out, err = ekd(
        "sweep", *files, "--name", "cpu-mini", "--seeds", "0,1,2", "--jobs", "2", "--dry-run",
        "--set", "data_root=/nonexistent/cifar100.npz", "--store", str(tmp_path / "s"),
    )  # fmt: skip
    assert code == 0, err
    assert "campaign cpu-mini (new): 36 runs from 12 config file(s)" in out
    assert "scores of teacher resnet20 on cifar100" in out and "for 12 run(s)" in out
    assert "teacher resnet20 on cifar100" in out and "for 33 run(s)" in out


def test_results_say_whether_a_difference_exceeds_the_spread() -> None:
    sys.path.insert(0, str(HERE))
    try:
        import results
    finally:
        sys.path.pop(0)

    def cell(mean: float, std: float) -> dict[str, Any]:
        return {"top1": {"mean": mean, "std": std, "n": 3}}

    assert results.compare(cell(0.200, 0.010), cell(0.195, 0.008)).endswith(
        "within one std, **not a result**"
    )
    assert "+0.50 points (std 1.00 / 0.80, n = 3 / 3)" in results.compare(
        cell(0.200, 0.010), cell(0.195, 0.008)
    )
    assert "a hint at most" in results.compare(cell(0.215, 0.010), cell(0.200, 0.005))
    assert "more than two stds" in results.compare(cell(0.240, 0.010), cell(0.200, 0.005))

"""The paper's experiment configs (examples/paper/**.toml): they load, resolve, plan and build.

Nothing is trained and no data is read: each file goes through the same
resolution ``ekd distill`` does before it touches data (config -> registries
-> plan_methods -> factories -> recipe), and the settings that define each
paper row are checked against values written out here independently of the
generator (mdistiller's configs, the released Energy KD settings, docs/method.md#training-recipes).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from ekdcli.config import Config, resolve
from ekdcli.jobs.common import resolve_recipe
from ekdcli.jobs.plan import build_losses, plan_methods
from ekdcli.sdk.plugins import registry

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "examples" / "paper"
CONFIGS = sorted(PAPER.glob("*/*.toml"))
README = REPO / "examples" / "README.md"

SMALL_LR_STUDENTS = {"mobilenetv2", "shufflev1", "shufflev2"}
# mdistiller configs/cifar100/dkd/*.yaml and configs/imagenet/*/dkd.yaml
DKD_BETA = {
    ("vgg13", "vgg8"): 6.0,
    ("vgg13", "mobilenetv2"): 6.0,
    ("resnet32x4", "shufflev2"): 8.0,
    ("resnet32x4", "resnet8x4"): 8.0,
    ("imagenet/resnet34", "imagenet/resnet18"): 0.5,
    ("imagenet/resnet50", "imagenet/mobilenetv1"): 2.0,
}
T1 = [
    ("resnet56", "resnet20"),
    ("resnet110", "resnet32"),
    ("resnet32x4", "resnet8x4"),
    ("wrn_40_2", "wrn_16_2"),
    ("wrn_40_2", "wrn_40_1"),
    ("vgg13", "vgg8"),
    ("vgg13", "mobilenetv2"),
    ("resnet50", "mobilenetv2"),
    ("wrn_40_2", "shufflev1"),
    ("resnet32x4", "shufflev1"),
    ("resnet32x4", "shufflev2"),
]
T5 = [
    ("wrn_40_2", "wrn_16_2"),
    ("resnet56", "resnet20"),
    ("resnet32x4", "resnet8x4"),
    ("vgg13", "vgg8"),
    ("vgg13", "mobilenetv2"),
    ("resnet32x4", "shufflev2"),
]
IMAGENET = [("imagenet/resnet50", "imagenet/mobilenetv1"), ("imagenet/resnet34", "imagenet/resnet18")]
LT = [("resnet32x4", "resnet8x4"), ("vgg13", "vgg8"), ("vgg13", "mobilenetv2"), ("resnet32x4", "shufflev2")]
GRADATION = [
    ("wrn_40_2", "wrn_16_2"),
    ("resnet32x4", "resnet8x4"),
    ("vgg13", "mobilenetv2"),
    ("resnet32x4", "shufflev2"),
]


def _row(
    method: str, pair: tuple[str, str], augment: str | None = None, rate: float | None = None, **energy: Any
):
    """What distinguishes one paper row: method, augmentation, rate, energy ablation, pair."""
    return (method, augment, rate, energy.get("apply"), energy.get("segments"), *pair)


# The feature-based methods of section 4.1 ("PKD" is PKT) and mdistiller's settings of each
# (engine/cfg.py, configs/cifar100/*.yaml; ReviewKD's weight 5 on CIFAR-100).
FEATURES = ("at", "ofd", "crd", "fitnet", "pkt", "rkd", "vid", "reviewkd")
MDISTILLER_CIFAR = {
    "at": {"w_ce": 1.0, "w_feat": 1000.0, "p": 2},
    "ofd": {"w_ce": 1.0, "w_feat": 0.001, "connector_kernel": 1},
    "crd": {"w_ce": 1.0, "w_feat": 0.8, "mode": "exact", "feat_dim": 128, "nce_k": 16384, "nce_momentum": 0.5, "nce_t": 0.07},
    "fitnet": {"w_ce": 1.0, "w_feat": 100.0, "hint_layer": 2},
    "pkt": {"w_ce": 1.0, "w_feat": 30000.0},
    "rkd": {"w_ce": 1.0, "w_feat": 1.0, "distance_weight": 25.0, "angle_weight": 50.0, "pdist_eps": 1e-12, "pdist_squared": False},
    "vid": {"w_ce": 1.0, "w_feat": 1.0, "eps": 1e-5, "init_pred_var": 5.0},
    "reviewkd": {"w_ce": 1.0, "w_feat": 5.0, "warmup": 20.0},
}  # fmt: skip
# configs/imagenet/<pair>/<method>.yaml: (batch, lr) and the weight of the feature loss
MDISTILLER_IMAGENET = {
    ("at", "imagenet/resnet18"): (512, 0.2, 1000.0),
    ("at", "imagenet/mobilenetv1"): (512, 0.2, 1000.0),
    ("ofd", "imagenet/resnet18"): (128, 0.05, 0.0001),
    ("ofd", "imagenet/mobilenetv1"): (128, 0.05, 0.0001),
    ("crd", "imagenet/resnet18"): (256, 0.1, 0.8),
    ("crd", "imagenet/mobilenetv1"): (256, 0.1, 0.8),
    ("reviewkd", "imagenet/resnet18"): (256, 0.1, 1.0),
    ("reviewkd", "imagenet/mobilenetv1"): (256, 0.1, 8.0),
}

# The rows of every table, written out from the paper (Tables 1-7, Figure 2).
EXPECTED_ROWS: dict[str, set[tuple[Any, ...]]] = {
    "table1": {_row(m, p) for p in T1 for m in ("kd", "energy_kd", *FEATURES)},
    "table2": {_row(m, p) for p in T1[5:7] + T1[10:] for m in ("dkd", "energy_dkd")},
    "table3": {
        _row(m, p) for p in IMAGENET for m in ("kd", "dkd", "energy_dkd", "at", "ofd", "crd", "reviewkd")
    },
    "table4": {_row("energy_kd", p, apply=a) for p in (T1[2], T1[10]) for a in ("low", "high", "both")}
    | {_row("energy_kd", p, segments=10) for p in GRADATION},
    "table5": {_row("kd", p) for p in T5}
    | {_row("kd", p, "cutmix") for p in T5}
    | {_row("kd", p, "he-cutmix", r) for p in T5 for r in (0.2, 0.3, 0.4, 0.5)},
    "table6": {_row("kd", ("resnet32x4", "resnet8x4"), "he-cutmix")},
    "table7": {_row(m, p) for p in LT for m in ("kd", "dkd", "energy_kd", "reviewkd")},
    "figure2": {
        _row("kd", p, a, r)
        for p in (("vgg13", "mobilenetv2"), ("resnet32x4", "shufflev2"))
        for a in ("le-cutmix", "he-cutmix", "mixed-cutmix")
        for r in (0.1, 0.2, 0.3, 0.4, 0.5)
    },
}
EXPECTED_COUNTS = {"table1": 110, "table2": 6, "table3": 14, "table4": 10, "table5": 36, "table6": 1}
EXPECTED_COUNTS |= {"table7": 16, "figure2": 30}


def _load(path: Path) -> Config:
    return resolve(config_file=path)


def _key(config: Config) -> tuple[Any, ...]:
    return _row(config.method, (config.teacher, config.student), config.augment, config.rate, **config.energy)


def _stub_dataset(config: Config) -> SimpleNamespace:
    return SimpleNamespace(name=config.data, info={})


def _id(path: Path) -> str:
    return path.relative_to(PAPER).as_posix()


def test_configs_exist() -> None:
    assert len(CONFIGS) == sum(EXPECTED_COUNTS.values()) == 223


@pytest.mark.parametrize("table", sorted(EXPECTED_ROWS))
def test_each_table_has_exactly_its_rows(table: str) -> None:
    files = sorted((PAPER / table).glob("*.toml"))
    rows = [_key(_load(f)) for f in files]
    assert len(files) == EXPECTED_COUNTS[table] == len(EXPECTED_ROWS[table])
    assert len(set(rows)) == len(rows), "two files describe the same row"
    assert set(rows) == EXPECTED_ROWS[table]


@pytest.mark.parametrize("path", CONFIGS, ids=_id)
def test_config_resolves_plans_and_builds(path: Path) -> None:
    config = _load(path)
    table = path.parent.name
    text = path.read_text(encoding="utf-8")

    # names resolve, and are the canonical names (the store keeps weights under them)
    for name in (config.teacher, config.student):
        assert name is not None
        assert registry("models").get(name).name == name
    dataset = registry("datasets").get(config.data)
    allowed = set(dataset.info.get("options", {}))
    assert set(config.data_options) <= allowed, f"unknown [data_options] for {config.data}"
    if table == "table7":
        assert (config.data, config.data_options) == (
            "cifar100-lt",
            {"imbalance_factor": 0.5, "profile": "exp"},
        )
    elif table == "table3":
        assert (config.data, config.data_root) == ("imagenet", "/path/to/imagenet")
    else:
        assert (config.data, config.data_options, config.data_root) == ("cifar100", {}, None)

    if config.method in FEATURES:  # mdistiller's settings, checked on the file itself
        _check_feature_method(config)
        if config.method not in {c.name for c in registry("distillers").list()}:
            pytest.skip(f"method {config.method!r} is not registered in this checkout yet")

    # the plan ekd distill makes, and the components it builds from it
    plan = plan_methods(config)
    distiller, augmentation = build_losses(config, plan, (config.teacher, config.student))
    described = distiller.describe()
    assert described["method"] == config.method

    # recipe: explicit, valid, the paper's schedule and the small-student learning rate
    assert config.recipe != "auto"
    recipe = resolve_recipe(config, _stub_dataset(config)).validate()
    imagenet = config.data == "imagenet"
    energy_method = config.method.startswith("energy_")
    if imagenet:
        batch, lr = MDISTILLER_IMAGENET.get((config.method, config.student), (512, 0.2, None))[:2]
        assert (recipe.epochs, recipe.batch_size, recipe.lr, recipe.weight_decay) == (100, batch, lr, 1e-4)
        assert recipe.milestones == (30, 60, 90)
    else:
        expected_lr = 0.01 if config.student in SMALL_LR_STUDENTS else 0.05
        assert (recipe.batch_size, recipe.lr, recipe.weight_decay) == (64, expected_lr, 5e-4)
        if energy_method:
            assert recipe.epochs == 360 and recipe.milestones == (150, 180, 210, 240, 270, 300)
        else:
            assert recipe.epochs == 240 and recipe.milestones == (150, 180, 210)

    pair = (config.teacher, config.student)
    _check_distiller(config, described, pair, imagenet)
    _check_augmentation(path, config, augmentation)
    _check_header(path, text, table)


def _check_feature_method(config: Config) -> None:
    options = config.distiller
    if config.data == "imagenet":
        assert options["w_feat"] == MDISTILLER_IMAGENET[(config.method, config.student)][2]
        if config.method == "reviewkd":
            assert options["warmup"] == 1.0 and options["stu_preact"] is True
            assert options["shapes"] == options["out_shapes"] == [1, 7, 14, 28, 56]
        return
    assert options == MDISTILLER_CIFAR[config.method]


def _check_distiller(
    config: Config, described: dict[str, Any], pair: tuple[str, str], imagenet: bool
) -> None:
    if config.method == "kd":
        expected = (1.0, 0.5, 0.5) if imagenet else (4.0, 0.1, 0.9)
        assert (described["t"], described["w_ce"], described["w_kd"]) == expected
    if config.method in ("dkd", "energy_dkd"):
        assert described["beta"] == DKD_BETA[pair]
        assert (described["alpha"], described["w_ce"]) == (1.0, 1.0)
        assert described["warmup"] == (1.0 if imagenet else 20.0)
    if config.method == "dkd":
        assert described["t"] == (1.0 if imagenet else 4.0)
    if config.method == "energy_kd":
        assert (described["w_ce"], described["w_kd"]) == (0.1, 0.9)
    if not config.method.startswith("energy_"):
        return
    # the released code's rule: online energies, T 2 / 4 / 6, rates 0.2 (0.3 for resnet56 -> resnet20)
    assert (described["preset"], described["source"]) == ("official", "online")
    if described["mode"] == "gradation":
        ramp = [2.0 + 4.0 * k / 9 for k in range(10)]
        assert described["temperatures"] == pytest.approx(ramp)
        return
    rate = 0.3 if pair == ("resnet56", "resnet20") else 0.2
    assert (described["low_rate"], described["high_rate"]) == (rate, rate)
    low, mid, high = (0.5, 1.0, 1.5) if imagenet else (2.0, 4.0, 6.0)
    apply = described["apply"]
    expected = {
        "low": low if apply in ("both", "low") else mid,
        "mid": mid,
        "high": high if apply in ("both", "high") else mid,
    }
    assert described["temperatures"] == expected


def _check_augmentation(path: Path, config: Config, augmentation: Any) -> None:
    if config.augment is None:
        assert augmentation is None
        return
    described = augmentation.describe()
    assert described["mode"] == "extra"
    match = re.search(r"_cutmix(\d+)-", path.name)
    if config.augment == "cutmix":
        assert described["rate"] == 1.0
    elif match:  # the file name carries the percentage the paper's row uses
        assert described["rate"] == pytest.approx(int(match.group(1)) / 100)
        assert config.rate == described["rate"]
    else:  # the bench file: ekd bench varies the rate; distill uses the default 0.2
        assert path.parent.name == "table6" and described["rate"] == 0.2


def _check_header(path: Path, text: str, table: str) -> None:
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any(line.startswith("# Paper: ") for line in header)
    rel = f"examples/paper/{_id(path)}"
    seeds = (0,) if table == "table6" else (0, 1, 2)
    for seed in seeds:
        command = f"ekd distill --config {rel} --data-root "
        assert any(command in line and f"--seed {seed} " in line for line in header), (command, seed)
    if table == "table6":
        assert any(
            f"ekd bench --config {rel}" in line and "--aug-rates 0.1,0.2,0.3,0.4,0.5,1.0" in line
            for line in header
        )


def test_preset_flag_switches_to_the_paper_rule() -> None:
    """README: ``--preset paper`` runs the paper's Eq. 9 direction with the same file."""
    path = PAPER / "table1" / "energy_kd-resnet32x4-resnet8x4.toml"
    official = plan_methods(_load(path))
    paper = plan_methods(resolve(flags={"energy": {"preset": "paper"}}, config_file=path))
    temps = {
        name: build_losses(_load(path), plan, ("resnet32x4", "resnet8x4"))[0].describe()["temperatures"]
        for name, plan in (("official", official), ("paper", paper))
    }
    assert temps == {
        "official": {"low": 2.0, "mid": 4.0, "high": 6.0},
        "paper": {"low": 6.0, "mid": 4.0, "high": 2.0},
    }


def test_rate_flag_overrides_the_file() -> None:
    """``--rate`` on an HE-DA file changes the augmentation rate; on Energy KD both temperature rates."""
    heda = PAPER / "table5" / "kd-he_cutmix20-resnet32x4-resnet8x4.toml"
    plan = plan_methods(resolve(flags={"rate": 0.5}, config_file=heda))
    assert plan.augmentation is not None and plan.augmentation_options["rate"] == 0.5
    energy = PAPER / "table1" / "energy_kd-resnet32x4-resnet8x4.toml"
    plan = plan_methods(resolve(flags={"rate": 0.4}, config_file=energy))
    assert (plan.rule_options["low_rate"], plan.rule_options["high_rate"]) == (0.4, 0.4)


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ekd_paper_generate", PAPER / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_committed_files_equal_the_generator_output(tmp_path: Path) -> None:
    generate = _generator()
    assert generate.main(["--out", str(tmp_path)]) == 0
    fresh = {
        p.relative_to(tmp_path).as_posix(): p.read_text(encoding="utf-8") for p in tmp_path.glob("*/*.toml")
    }
    committed = {_id(p): p.read_text(encoding="utf-8") for p in CONFIGS}
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"re-run python examples/paper/generate.py: {stale[:5]}"


def test_generator_removes_files_it_no_longer_makes(tmp_path: Path) -> None:
    generate = _generator()
    (tmp_path / "table1").mkdir()
    stray = tmp_path / "table1" / "old-row.toml"
    stray.write_text("data = 'cifar100'\n", encoding="utf-8")
    keep = tmp_path / "notes.txt"
    keep.write_text("not a config\n", encoding="utf-8")
    generate.write_all(tmp_path)
    assert not stray.exists() and keep.exists()
    assert len(list(tmp_path.glob("*/*.toml"))) == len(CONFIGS)


def test_readme_lists_the_paper_numbers() -> None:
    """Every number the configs cite from Tables 2-7 appears in examples/README.md."""
    readme = README.read_text(encoding="utf-8")
    numbers: set[str] = set()
    for path in CONFIGS:
        if path.parent.name in ("table1", "figure2"):
            continue  # the text we have has no numbers for these rows
        paper_line = next(
            line for line in path.read_text(encoding="utf-8").splitlines() if "# Paper: " in line
        )
        numbers.update(re.findall(r"\d+\.\d\d", paper_line.split("(")[0]))
    assert len(numbers) > 50
    missing = sorted(n for n in numbers if n not in readme)
    assert not missing, f"numbers missing from examples/README.md: {missing}"

"""examples/cpu-mini: its config resolves, and every distillation its script runs plans and builds."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

from ekdcli.config import resolve
from ekdcli.jobs.common import resolve_recipe
from ekdcli.jobs.distill import plan_methods
from ekdcli.sdk.plugins import registry

HERE = Path(__file__).resolve().parents[2] / "examples" / "cpu-mini"


def test_config_and_script_agree_with_the_registry() -> None:
    config = resolve(config_file=HERE / "ekd.toml")
    assert (config.data, config.teacher, config.student) == ("cifar100", "resnet32", "resnet8")
    for name in (config.teacher, config.student):
        assert registry("models").get(name).name == name
    recipe = resolve_recipe(config, SimpleNamespace(info={}, name="cifar100"))
    assert (recipe.epochs, recipe.milestones) == (15, (9, 12))

    script = (HERE / "run.sh").read_text()
    runs = [shlex.split(line) for line in re.findall(r"^\s*ekd distill .*$", script, flags=re.M)]
    methods = re.search(r"for method in ([\w ]+); do", script)
    assert methods is not None and runs
    planned = 0
    for method in methods.group(1).split():
        plan = plan_methods(dataclasses.replace(config, method=method))
        assert plan.distiller.build(**plan.distiller_options).describe()["method"] == method
        planned += 1
    for argv in runs:
        if "--augment" in argv:
            augment = argv[argv.index("--augment") + 1]
            rate = float(argv[argv.index("--rate") + 1])
            run = dataclasses.replace(
                config, method=argv[argv.index("--method") + 1], augment=augment, rate=rate
            )
            plan = plan_methods(run)
            assert (
                plan.augmentation is not None
                and plan.augmentation.build(**plan.augmentation_options).options.rate == rate
            )
            planned += 1
    assert planned == 4

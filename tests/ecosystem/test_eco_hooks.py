"""Every hook is documented and tested; every shipped hook honours the register contract; the guide runs."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
import pytest

from ekdcli.sdk import hookspecs
from ekdcli.sdk.registry import Component

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "plugins.md"
TEST_DIRS = [ROOT / "tests", *sorted((ROOT / "examples" / "plugins").glob("*/tests"))]
KNOWN_HOOKS = {
    "register_models",
    "register_datasets",
    "register_distillers",
    "register_augmentations",
    "register_executors",
}


# ----------------------------------------------------------------- coverage checker
def hookspec_names() -> list[str]:
    """The hooks ekd defines: functions of ekdcli.sdk.hookspecs carrying pluggy's spec marker."""
    marker = f"{hookspecs.PROJECT}_spec"
    return sorted(name for name, obj in vars(hookspecs).items() if callable(obj) and hasattr(obj, marker))


def called_names(folders: Iterable[Path]) -> set[str]:
    """Names of every function called in the Python files under ``folders`` (``f(...)`` or ``x.f(...)``).

    Definitions (``def register_models``) and mentions in strings do not count: only calls.
    """
    names: set[str] = set()
    for folder in folders:
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                if isinstance(node, ast.Call):
                    func = node.func
                    if isinstance(func, ast.Name):
                        names.add(func.id)
                    elif isinstance(func, ast.Attribute):
                        names.add(func.attr)
    return names


def coverage_problems(hooks: Iterable[str], guide: str, calls: set[str]) -> list[str]:
    sections = set(re.findall(r"^### (\w+)\s*$", guide, flags=re.MULTILINE))
    problems = []
    for hook in hooks:
        if hook not in sections:
            problems.append(f"{hook}: no '### {hook}' section in docs/plugins.md")
        if hook not in calls:
            problems.append(f"{hook}: no test calls it")
    return problems


def test_every_hookspec_is_documented_and_called_by_a_test() -> None:
    hooks = hookspec_names()
    assert set(hooks) >= KNOWN_HOOKS  # the marker lookup finds the real hooks
    problems = coverage_problems(hooks, GUIDE.read_text(encoding="utf-8"), called_names(TEST_DIRS))
    assert problems == [], "\n".join(problems)


def test_the_coverage_check_fails_for_an_undocumented_untested_hook(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_x.py").write_text(
        "def register_widgets(register):\n    'register_widgets(...) in a string'\n\n"
        "def test_a():\n    plugin.register_gadgets(print)\n"
    )
    guide = "## register_widgets\n### register_gadgets\n"
    assert coverage_problems(["register_widgets", "register_gadgets"], guide, called_names([tests])) == [
        "register_widgets: no '### register_widgets' section in docs/plugins.md",
        "register_widgets: no test calls it",
    ]


# --------------------------------------------------------------- register contract
class Recorder:
    """A ``register`` with the exact signature the hookspecs document; it records every call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self,
        name: str,
        factory: Any,
        *,
        aliases: Iterable[str] = (),
        description: str = "",
        info: dict[str, Any] | None = None,
    ) -> None:
        self.calls.append(
            {
                "name": name,
                "factory": factory,
                "aliases": tuple(aliases),
                "description": description,
                "info": info,
            }
        )


def resolve(factory: Any) -> Any:
    if callable(factory):
        return factory
    module_name, sep, attr = factory.partition(":")
    assert sep and attr, f"{factory!r} is not a 'module:attr' string"
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def check_contract(kind: str, recorder: Recorder) -> None:
    assert recorder.calls, f"the {kind} hook registered nothing"
    for call in recorder.calls:
        name = call["name"]
        assert isinstance(name, str) and name and name == name.strip(), name
        assert all(isinstance(a, str) and a for a in call["aliases"]), name
        assert isinstance(call["description"], str) and call["description"], f"{name} has no description"
        # ekd list --json prints the info as the registry keeps it (an option record becomes its defaults)
        json.dumps(Component(kind, name, "m:f", "p", info=dict(call["info"] or {})).info)
        target = resolve(call["factory"])
        if kind == "commands":
            assert isinstance(target, click.Command), name
        else:
            assert callable(target), name


@pytest.mark.usefixtures("examples_installed")
def test_models_hooks_honour_the_contract() -> None:
    import ekd_example
    import ekd_plugins.models
    import ekd_timm

    for module in (ekd_plugins.models, ekd_example, ekd_timm):
        recorder = Recorder()
        module.register_models(recorder)
        check_contract("models", recorder)


@pytest.mark.usefixtures("examples_installed")
def test_datasets_hooks_honour_the_contract() -> None:
    import ekd_example
    import ekd_plugins.datasets

    for module in (ekd_plugins.datasets, ekd_example):
        recorder = Recorder()
        module.register_datasets(recorder)
        check_contract("datasets", recorder)


def test_distillers_and_augmentations_hooks_honour_the_contract() -> None:
    import ekd_plugins.augmentations
    import ekd_plugins.distillers

    distillers, augmentations = Recorder(), Recorder()
    ekd_plugins.distillers.register_distillers(distillers)
    ekd_plugins.augmentations.register_augmentations(augmentations)
    check_contract("distillers", distillers)
    check_contract("augmentations", augmentations)
    assert {"energy_kd", "energy_dkd"} <= {c["name"] for c in distillers.calls}
    assert "he-cutmix" in {c["name"] for c in augmentations.calls}


@pytest.mark.usefixtures("examples_installed")
def test_commands_hook_honours_the_contract() -> None:
    import ekd_example

    recorder = Recorder()
    ekd_example.register_commands(recorder)
    check_contract("commands", recorder)
    assert [c["name"] for c in recorder.calls] == ["class-counts"]


# ------------------------------------------------------------------- the tutorial
def tutorial_files(guide: str) -> dict[str, str]:
    """Code blocks of the guide whose first line is ``# ekd-mlp/<path>``: the tutorial package."""
    blocks = re.findall(r"```\w+\n# (ekd-mlp/[^\n]+)\n(.*?)```", guide, flags=re.DOTALL)
    return {path: body for path, body in blocks}


def test_the_tutorial_package_in_the_guide_installs_and_passes_its_own_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = tutorial_files(GUIDE.read_text(encoding="utf-8"))
    assert set(files) == {
        "ekd-mlp/pyproject.toml",
        "ekd-mlp/src/ekd_mlp/__init__.py",
        "ekd-mlp/src/ekd_mlp/model.py",
        "ekd-mlp/tests/test_ekd_mlp.py",
    }
    for path, body in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(body)
    # "pip install -e": the dist-info pip would write, from the tutorial's own pyproject.toml
    project = tomllib.loads(files["ekd-mlp/pyproject.toml"])["project"]
    site = tmp_path / "site"
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    entry_points = "".join(f"{k} = {v}\n" for k, v in project["entry-points"]["ekd"].items())
    (info / "entry_points.txt").write_text("[ekd]\n" + entry_points)
    src = tmp_path / "ekd-mlp" / "src"
    for folder in (src, site):
        monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(src), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    spec = importlib.util.spec_from_file_location(
        "ekd_mlp_tutorial_tests", tmp_path / "ekd-mlp/tests/test_ekd_mlp.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        tests = [getattr(module, name) for name in dir(module) if name.startswith("test_")]
        assert len(tests) == 3
        for test in tests:
            test()
    finally:
        for name in [m for m in sys.modules if m.startswith("ekd_mlp")]:
            del sys.modules[name]


@pytest.mark.usefixtures("examples_installed")
def test_trackers_hooks_honour_the_contract() -> None:
    import ekd_plugins.trackers
    import ekd_wandb

    first_party, wandb = Recorder(), Recorder()
    ekd_plugins.trackers.register_trackers(first_party)
    ekd_wandb.register_trackers(wandb)
    check_contract("trackers", first_party)
    check_contract("trackers", wandb)
    assert [c["name"] for c in first_party.calls] == ["tensorboard", "mlflow"]
    assert [c["name"] for c in wandb.calls] == ["wandb"]


def test_executors_hooks_honour_the_contract_and_local_runs_a_task(tmp_path: Path) -> None:
    import ekd_plugins.executors

    from ekdcli.sdk.contracts import ExecTask, Executor, TaskOutcome

    recorder = Recorder()
    ekd_plugins.executors.register_executors(recorder)
    check_contract("executors", recorder)
    assert [(c["name"], c["info"]["remote"]) for c in recorder.calls] == [
        ("local", False),
        ("ray", True),
        ("slurm", True),
    ]
    local = resolve(recorder.calls[0]["factory"])(jobs=2)
    assert (
        isinstance(local, Executor) and local.remote is False and "up to 2 runs at once" in local.describe()
    )
    # one real task through the built executor: `python -m ekdcli list executors`, its output in the log
    log = tmp_path / "list.log"
    task = ExecTask(key="list", args=["list", "executors"], log=str(log), cwd=str(tmp_path))
    started: list[str] = []
    ended: list[TaskOutcome] = []
    local.run([task], lambda t: started.append(t.key), lambda t, outcome: ended.append(outcome))
    assert started == ["list"] and [(o.key, o.ok) for o in ended] == [("list", True)]
    text = log.read_text(encoding="utf-8")
    assert "local" in text and "ray" in text and "slurm" in text

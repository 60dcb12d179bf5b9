"""``ekd sweep`` before any work: parsing, names, the plan (``--dry-run``), refusals, the campaign lock,
the executors' environment and errors, and the paper's numbers.  Fast: nothing is trained."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from ekdcli.campaign.campaign import define, load, parse_grid, parse_seeds, split_values
from ekdcli.campaign.paper import table
from ekdcli.sdk.contracts import ExecTask
from ekdcli.store.campaign import CampaignDir
from ekdcli.store.layout import Store
from ekdcli.util.errors import UsageError

PAIR = 'teacher = "resnet56"\nstudent = "resnet20"\nmethod = "kd"\nepochs = 2\n'
HE = PAIR + 'augment = "he-cutmix"\nrate = 0.5\n'
RAY = pytest.mark.skipif(
    __import__("importlib").util.find_spec("ray") is None,
    reason="Ray is not installed (pip install 'ekd[ray]')",
)


def configs(folder: Path, **texts: str) -> list[str]:
    paths = []
    for stem, text in texts.items():
        (folder / f"{stem}.toml").write_text(text)
        paths.append(str(folder / f"{stem}.toml"))
    return paths


def test_values_seeds_and_grid_are_parsed_and_checked() -> None:
    assert split_values("kd, energy_kd") == ["kd", "energy_kd"]
    assert split_values('[150,180],[1,2],"a,b"') == ["[150,180]", "[1,2]", '"a,b"']
    assert parse_seeds("0, 1,2,1") == [0, 1, 2] and parse_seeds(None) is None
    assert parse_grid(["method=kd,dkd", "energy.preset=paper,official"]) == [
        ("method", ["kd", "dkd"]),
        ("energy.preset", ["paper", "official"]),
    ]
    for bad, message in [
        (["method"], r"--grid wants KEY=V1,V2"),
        (["method=kd,,dkd"], r"--grid wants KEY=V1,V2"),
        (["method=kd", "method=dkd"], r"names 'method' twice"),
        (["rate=0.3,0.3"], r"a value is repeated"),
        (["nokey=1,2"], r"unknown key 'nokey'"),
        (["epochs=one,two"], r"'epochs' must be an integer"),
        (["table.key.x=1"], r"--set wants KEY=VALUE"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_grid(bad)
    with pytest.raises(UsageError, match=r"--seeds wants comma-separated whole numbers"):
        parse_seeds("0,-1")


def test_runs_are_named_after_config_grid_and_seed_and_run_seed_by_seed(tmp_path: Path) -> None:
    paths = configs(tmp_path, a=PAIR, b=PAIR)
    grid = parse_grid(["method=kd,energy_kd", "rate=0.3"])
    campaign_dir, definition, _ = define(Store(tmp_path / "s"), paths, [0, 1], grid, [], None)
    assert campaign_dir.name == tmp_path.name  # several configs in one folder: the folder's name
    ids = [run.id for run in load(campaign_dir, definition, sources=True).runs]
    expected = [f"{c}-method-{m}-rate0.3-seed{s}" for s in (0, 1) for c in "ab" for m in ("kd", "energy_kd")]
    assert ids == expected
    (tmp_path / "other").mkdir()
    twin = configs(tmp_path / "other", a=PAIR)
    with pytest.raises(UsageError, match=r"two configs are named 'a'"):
        define(Store(tmp_path / "s"), [paths[0], *twin], None, [], [], "x")
    with pytest.raises(UsageError, match=r"several folders; name the campaign with --name"):
        define(Store(tmp_path / "s"), [paths[1], *twin], None, [], [], None)


def test_dry_run_prints_runs_and_prerequisites_and_writes_nothing(tmp_path: Path, ekd: Any) -> None:
    paths = configs(tmp_path, kd=PAIR, he=HE)
    code, out, err = ekd("sweep", *paths, "--seeds", "0,1", "--jobs", "2", "--dry-run")
    assert code == 0, err
    store = tmp_path / "store"
    assert f"campaign {tmp_path.name} (new): 4 runs from 2 config file(s)" in out
    assert "executor: local: up to 2 runs at once" in out
    assert (
        "teacher resnet56 on digits" in out
        and "for 4 run(s): to build on every training image: ekd train --config" in out
    )
    assert f"--model resnet56 --run-name {tmp_path.name}.teacher-resnet56-digits" in out
    assert (
        "scores of teacher resnet56 on digits" in out
        and "for 2 run(s): to build on every training image: ekd score" in out
    )
    for run in ("kd-seed0", "he-seed0", "kd-seed1", "he-seed1"):
        assert f"  {run}  start" in out
    assert "would run: 4 run(s) to do (0 resumed from a checkpoint), 0 already done" in out
    assert "2 prerequisite(s) to build" in out
    assert not store.exists()  # a dry run writes nothing


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        ('method = "nope"\n', (), r"unknown method 'nope'"),
        (PAIR, ("--grid", "augment=he-cutmx"), r"unknown augmentation 'he-cutmx'.*Did you mean 'he-cutmix'"),
        ('student = "resnet999"\n', (), r"unknown model 'resnet999'"),
        (PAIR, ("--seeds", "a"), r"--seeds wants"),
        (PAIR, ("--executor", "slurmm"), r"unknown executor 'slurmm'"),
        (PAIR, ("--ray-address", "auto"), r"--ray-address applies to --executor ray"),
        ('teacher = "x.safetensors"\n', (), r"the teacher weights file x.safetensors does not exist"),
    ],
)
def test_bad_campaigns_fail_before_any_work(
    tmp_path: Path, ekd: Any, text: str, extra: tuple[str, ...], message: str
) -> None:
    paths = configs(tmp_path, c=text)
    code, _, err = ekd("sweep", *paths, *extra)
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ") and re.search(message, line), line
    assert not (tmp_path / "store").exists()


def _recorded(tmp_path: Path, text: str = PAIR) -> tuple[CampaignDir, list[str]]:
    """A campaign written to the store (as a sweep does before its runs), nothing run."""
    paths = configs(tmp_path, c=text)
    campaign_dir, definition, texts = define(Store(tmp_path / "store"), paths, [0], [], [], "x")
    campaign_dir.write_definition(definition, texts)
    return campaign_dir, paths


def test_a_changed_config_or_definition_is_refused(tmp_path: Path, ekd: Any) -> None:
    campaign_dir, paths = _recorded(tmp_path)
    assert (campaign_dir.path / "configs" / "c.toml").read_text() == PAIR
    code, out, _ = ekd("sweep", *paths, "--seeds", "0", "--name", "x", "--dry-run")
    assert code == 0 and "campaign x (continued)" in out
    code, out, _ = ekd("sweep", *paths, "--seeds", "0,1", "--name", "x", "--dry-run")
    assert code == 0 and "campaign x (grown by seed 1)" in out  # only adds: the campaign grows
    code, _, err = ekd("sweep", *paths, "--seeds", "1", "--name", "x", "--dry-run")
    assert code == 2 and "campaign 'x' already exists with other --seeds" in err
    Path(paths[0]).write_text(PAIR + "lr = 0.1\n")
    code, _, err = ekd("sweep", *paths, "--seeds", "0", "--name", "x", "--dry-run")
    assert (
        code == 2
        and "already exists with c.toml changed; continue it as it was with 'ekd sweep --name x'" in err
    )
    code, out, _ = ekd("sweep", "--name", "x", "--dry-run")  # the stored copy still defines it
    assert code == 0 and "  c-seed0  start" in out


def test_a_second_sweep_of_a_running_campaign_is_refused(tmp_path: Path, ekd: Any) -> None:
    campaign_dir, _ = _recorded(tmp_path)
    with campaign_dir.hold():
        assert campaign_dir.sweep_pid() == os.getpid()
        code, _, err = ekd("sweep", "--name", "x")
        assert code == 2
        assert f"campaign 'x' is being written by process {os.getpid()}" in err
        assert "another ekd sweep runs it: wait for it to end, or watch it with 'ekd sweep --status x'" in err
        code, out, _ = ekd("sweep", "--status", "x")
        assert code == 0 and f"an ekd sweep (PID {os.getpid()}) is running it" in out
    assert campaign_dir.sweep_pid() is None
    code, out, _ = ekd("sweep", "--status", "x")
    assert code == 0 and "1 runs, 1 pending, 0 running, 0 done, 0 failed; no ekd sweep is running it" in out
    code, _, err = ekd("sweep", "--status", "y")
    assert code == 2 and "no campaign 'y' in the store" in err and "It has: x." in err
    code, _, err = ekd("report", "y")
    assert code == 2 and "neither a campaign" in err
    code, _, err = ekd("report", "x")
    assert code == 2 and "campaign x has no finished run yet (1 not finished)" in err


def test_report_refuses_tables_it_cannot_show(ekd: Any) -> None:
    code, _, err = ekd("report", "x", "--paper", "table6")
    assert code == 2 and "table6 of the paper is a cost table, not accuracy" in err
    code, _, err = ekd("report", "x", "--paper", "table8")
    assert code == 2 and "the paper has no table 'table8'" in err


def test_the_papers_numbers_come_from_one_file() -> None:
    table5 = table("table5")
    pair = ("resnet56", "resnet20")
    assert table5.value({"method": "kd", "augment": "he-cutmix", "rate": 0.5}, pair) == 71.26
    assert table5.value({"method": "kd", "augment": "none"}, pair) == 70.66
    assert table5.value({"method": "kd", "augment": "cutmix", "rate": 1.0}, pair) == 70.77
    assert table5.value({"method": "kd", "augment": "cutmix", "rate": 0.5}, pair) is None  # the control
    assert table5.value({"method": "kd", "augment": "none"}, ("resnet32", "resnet8")) is None
    assert (
        table("table4").value(
            {"method": "energy_kd", "augment": "none", "apply": "low"}, ("wrn_40_2", "wrn_16_2")
        )
        is None
    )
    assert table("TABLE2").cells()[("vgg13", "vgg8")] == {"dkd": 74.68, "energy_dkd": 75.21}
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "paper"))
    try:
        import generate  # the example generator reads the same file
    finally:
        sys.path.pop(0)
    assert generate.TABLE5[pair] == (70.66, 70.77, 70.90, 71.15, 71.43, 71.26)
    assert generate.TABLE3[("imagenet/resnet34", "imagenet/resnet18")]["dkd"] == (71.70, 90.41)


# ------------------------------------------------------------------ executors
def test_the_local_executor_pins_gpus_and_splits_cpu_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from ekd_plugins.executors import local, process

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    executor = local.LocalExecutor(jobs=3)
    assert [executor.slot_env(s)["CUDA_VISIBLE_DEVICES"] for s in range(3)] == ["3", "5", "3"]
    assert "pinned to one of GPU 3, 5" in executor.describe()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(process, "available_cpus", lambda: 16)
    cpu = local.LocalExecutor(jobs=3)
    assert cpu.slot_env(1) == {"EKD_NUM_THREADS": "5", "OMP_NUM_THREADS": "5", "MKL_NUM_THREADS": "5"}
    assert local.LocalExecutor(jobs=1).slot_env(0) == {}  # one run: the runtime takes every core
    with pytest.raises(UsageError, match=r"'jobs' of executor 'local' must be at least 1"):
        local.LocalExecutor(jobs=0)


def test_the_local_executor_runs_tasks_and_reports_each_error_in_one_line(tmp_path: Path) -> None:
    from ekdcli.sdk.plugins import registry

    executor = registry("executors").get("local").build(jobs=2)
    tasks = [
        ExecTask("ok", ["--version"], str(tmp_path / "ok.log")),
        ExecTask("bad", ["list", "modles"], str(tmp_path / "bad.log"), cwd=str(tmp_path)),
        ExecTask("ok2", ["--version"], str(tmp_path / "ok.log")),
    ]
    started, done = [], {}
    executor.run(tasks, lambda t: started.append(t.key), lambda t, o: done.__setitem__(t.key, o))
    assert sorted(started) == ["bad", "ok", "ok2"] and set(done) == {"ok", "bad", "ok2"}
    assert done["ok"].ok and done["ok"].error == ""
    assert done["bad"].returncode == 2 and done["bad"].error.startswith(
        "unknown kind 'modles'. Did you mean 'models'"
    )
    log = (tmp_path / "ok.log").read_text()
    assert log.count("=== ") == 2 and log.count("ekd, version") == 2  # both attempts appended


def test_without_ray_the_ray_executor_says_how_to_install_it(
    tmp_path: Path, ekd: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as without the package
    paths = configs(tmp_path, c=PAIR)
    code, _, err = ekd("sweep", *paths, "--executor", "ray", "--dry-run")
    assert code == 2
    assert (
        err.strip()
        == "error: the ray executor needs Ray, which is not installed; install it with pip install 'ekd[ray]'."
    )


@RAY
def test_a_remote_executor_needs_an_absolute_store(tmp_path: Path, ekd: Any) -> None:
    paths = configs(tmp_path, c=PAIR)
    code, _, err = ekd(
        "sweep", *paths, "--executor", "ray", "--ray-address", "10.0.0.1:6379", "--store", "rel", "--dry-run"
    )
    assert code == 2 and "the store must be an absolute path that every node sees" in err and "'rel'" in err
    code, out, err = ekd(
        "sweep",
        *paths,
        "--executor",
        "ray",
        "--ray-address",
        "10.0.0.1:6379",
        "--store",
        str(tmp_path / "s"),
        "--dry-run",
    )
    assert code == 0, err
    assert "ray: up to 1 run at once on the Ray cluster at 10.0.0.1:6379" in out


def test_the_runtime_takes_its_cpu_threads_from_ekd_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from ekdcli.engine import EngineOptions, Runtime

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("EKD_NUM_THREADS", "1")
        assert Runtime(EngineOptions(device="cpu")).num_threads == 1 == torch.get_num_threads()
        monkeypatch.setenv("EKD_NUM_THREADS", "zero")  # not a number: ignored
        from ekdcli.engine.runtime import physical_cores

        assert Runtime(EngineOptions(device="cpu")).num_threads == physical_cores()
    finally:
        torch.set_num_threads(before)

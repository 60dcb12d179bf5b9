"""The engine side of feature distillers: features of the same passes, rows, binding, refusals, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import feature_kit as kit
import pytest
import torch

from ekdcli.engine import Batch
from ekdcli.engine.options import EngineOptions
from ekdcli.engine.runtime import Runtime
from ekdcli.method.features import bind_distiller, pair_context
from ekdcli.method.objective import DistillObjective
from ekdcli.sdk.contracts import EnergyContext
from ekdcli.sdk.energy import energy
from ekdcli.sdk.plugins import registry, reset_plugins

HERE = Path(__file__).resolve().parent
TINY = ("--data", "fake", "--limit-train", "64", "--limit-test", "32", "--batch-size", "16")
QUICK = (*TINY, "--device", "cpu", "--precision", "fp32", "--quiet")


@pytest.fixture
def registered() -> Iterator[None]:
    kit.register()
    kit.Probe.seen.clear()
    yield
    reset_plugins()


def _pair(train: int = 40) -> tuple[kit.FeatNet, kit.FeatNet, kit.Probe]:
    torch.manual_seed(0)
    teacher, student = kit.FeatNet(width=8), kit.FeatNet(width=6)
    probe = kit.Probe()
    labels = torch.arange(train) % 10

    class Data:
        num_classes, in_channels, image_size = 10, 3, (8, 8)

        def labels(self, split: str) -> torch.Tensor:
            return labels

    bind_distiller(probe, pair_context(student, teacher, ("s", "t"), Data(), None, 1))  # type: ignore[arg-type]
    return teacher, student, probe


def _batch(rows: int = 12, train: int = 40) -> Batch:
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(rows, 3, 8, 8, generator=gen)
    indices = torch.randperm(train, generator=gen)[:rows]
    return Batch(images, indices % 10, indices)


def _objective(augment: str | None, options: dict[str, Any], train: int = 40) -> tuple[Any, ...]:
    teacher, student, probe = _pair(train)
    aug = registry("augmentations").get(augment).build(**options) if augment else None
    with torch.no_grad():  # energies spread like the teacher's own (online selection compares them)
        energies = energy(teacher(_batch(train, train).images), 1.0)
    context = EnergyContext(energies, 1.0, "test") if aug is not None and aug.needs_energy else None
    objective = DistillObjective(teacher, probe, aug, context)
    objective.setup(Runtime(EngineOptions(device="cpu", precision="fp32")), 2)
    return objective, teacher, student, probe


def test_plain_step_gives_the_features_of_the_same_passes(registered: None) -> None:
    objective, teacher, student, probe = _objective(None, {})
    batch = _batch()
    student.train()
    out = objective(student, batch, 1, torch.Generator().manual_seed(0))
    (seen,) = kit.Probe.seen
    assert seen["rows"] == 12 and seen["student_rows"] == [12, 12, 12] and seen["pooled_rows"] == 12
    with torch.no_grad():
        logits, feats = teacher(batch.images, return_features=True)
    assert not teacher.training and seen["training"]  # teacher eval, the method's modules train
    assert torch.equal(seen["teacher_logits"], logits)
    assert all(torch.equal(a, b) for a, b in zip(seen["teacher_feats"], feats["feats"], strict=True))
    assert set(out.losses) == {"loss_ce", "loss_feat"} and out.logits is not None
    assert int(probe.modules.steps) == 1  # type: ignore[union-attr]
    assert [p.shape for p in objective.parameters()] == [torch.Size([16, 12, 1, 1])]  # the connector only


@pytest.mark.parametrize(
    ("augment", "options"),
    [
        ("he-cutmix", {"rate": 0.5, "mode": "extra"}),
        ("he-cutmix", {"rate": 0.5, "mode": "replace"}),
        ("he-cutmix", {"rate": 0.5, "mode": "replace", "source": "online"}),
        ("he-cutmix", {"rate": 0.5, "mode": "extra", "source": "online"}),
        ("he-mixup", {"rate": 0.5, "mode": "replace"}),
        ("cutmix", {"rate": 0.5, "mode": "extra"}),
        ("cutmix", {"rate": 0.5, "mode": "replace"}),
    ],
)
def test_mixed_steps_give_the_clean_rows_features(
    registered: None, augment: str, options: dict[str, Any]
) -> None:
    objective, teacher, student, _ = _objective(augment, options)
    batch = _batch(40)  # the whole training set: online selection takes its high-energy half
    student.train()
    out = objective(student, batch, 1, torch.Generator().manual_seed(3))
    (seen,) = kit.Probe.seen
    mixed = int(out.stats["augmented"])
    assert 0 < mixed < 40
    clean = 40 if options["mode"] == "extra" else 40 - mixed
    assert seen["rows"] == clean and seen["student_rows"] == [clean] * 3 and seen["pooled_rows"] == clean
    assert seen["teacher_rows"] == [clean] * 3
    rows = [int((batch.indices == i).nonzero()) for i in seen["indices"]]  # the clean rows, in batch order
    with torch.no_grad():
        logits, feats = teacher(batch.images[rows], return_features=True)
    assert torch.allclose(seen["teacher_logits"], logits, atol=1e-6)
    for got, want in zip(seen["teacher_feats"], feats["feats"], strict=True):
        assert torch.allclose(got, want, atol=1e-6)
    assert {"loss_ce", "loss_feat"} <= set(out.losses) and len(out.losses) > 2  # + the mixed rows' loss


def test_pair_context_counts_the_samples_the_run_uses() -> None:
    class Data:
        num_classes, in_channels, image_size = 3, 1, (5, 7)

        def labels(self, split: str) -> list[int]:
            return [2, 0, 1, 1, 0]

    pair = pair_context(torch.nn.Linear(1, 1), None, ("s", None), Data(), 3, 2)  # type: ignore[arg-type]
    assert (pair.train_size, pair.image_size, pair.world_size) == (3, (5, 7), 2)
    assert pair.train_labels.tolist() == [2, 0, 1] and pair.train_labels.dtype == torch.int64
    assert pair_context(torch.nn.Linear(1, 1), None, ("s", None), Data(), 99, 1).train_size == 5  # type: ignore[arg-type]


def test_bind_leaves_the_students_batch_norm_statistics_alone(registered: None) -> None:
    teacher, student, _ = _pair()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    student.train()
    bind_distiller(kit.Probe(), pair_context(student, teacher, ("s", "t"), _data(), None, 1))
    assert student.training  # its mode is given back
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())


def _data() -> Any:
    class Data:
        num_classes, in_channels, image_size = 10, 3, (8, 8)

        def labels(self, split: str) -> torch.Tensor:
            return torch.arange(40) % 10

    return Data()


@pytest.mark.slow
def test_two_processes_average_the_modules_gradients(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    out = tmp_path / "out"
    out.mkdir()
    mp.spawn(
        kit.ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "run"), str(out)), nprocs=2, join=True
    )
    rank0 = torch.load(out / "rank0.pt", weights_only=True)
    rank1 = torch.load(out / "rank1.pt", weights_only=True)
    assert not torch.equal(rank0["initial"], rank1["initial"])  # the ranks built different connectors
    assert torch.equal(rank0["trained"], rank1["trained"])  # rank 0's, then the same averaged steps
    assert not torch.equal(rank0["trained"], rank0["initial"])  # and it trained


# ------------------------------------------------------------------------------------ the command
def _teacher(ekd: Any) -> None:
    code, _, err = ekd("train", "--model", "featnet", *QUICK, "--epochs", "1")
    assert code == 0, err


@pytest.mark.slow
def test_a_run_stores_the_student_alone_and_checkpoints_the_modules(registered: None, ekd: Any) -> None:
    from ekdcli.store.weights import load_tensors

    _teacher(ekd)
    args = ("distill", "--teacher", "featnet", "--student", "featnet", "--method", "probe", *QUICK)
    code, _, err = ekd(*args, "--epochs", "1", "--run-name", "p")
    assert code == 0, err
    run = Path(os.environ["EKD_HOME"]) / "runs" / "p"
    architecture = set(kit.FeatNet().state_dict())
    for name in ("best.safetensors", "last.safetensors"):
        assert set(load_tensors(run / name)[0]) == architecture
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    modules = checkpoint["objective"]["distiller"]["modules"]
    assert set(modules) == {"connector.weight", "memory", "steps"}
    assert int(modules["steps"]) == 4 and modules["memory"].shape == (64, 12)  # --limit-train 64: 4 steps
    assert modules["memory"].abs().sum() > 0


def test_ekd_list_distillers_says_logit_or_feature_and_what_it_reads(registered: None, ekd: Any) -> None:
    code, out, _ = ekd("list", "distillers")
    lines = out.splitlines()
    kd = next(line for line in lines if line.startswith("kd "))
    assert kd.split()[1] == "logit"
    at = lines.index(next(line for line in lines if line.startswith("probe ")))
    assert lines[at].split()[1] == "feature"
    assert lines[at + 1].strip() == "reads: feats, pooled_feat; model hooks: stage_channels"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ("--student", "logitnet"),
            "error: method 'probe' needs feats, pooled_feat, stage_channels from the student, which model "
            "'logitnet' does not provide; pick a student whose 'ekd list models' entry lists them.",
        ),
        (
            ("--student", "featnet", "--teacher-cache"),
            "error: method 'probe' reads the teacher's intermediate features, but the teacher cache holds "
            "logits only; drop --teacher-cache for this method.",
        ),
        (
            ("--student", "featnet", "--temperature-rule", "energy"),
            "error: method 'probe' does not use a temperature; drop --temperature-rule or pick a "
            "temperature-based method (kd, dkd, mlkd, ctkd).",
        ),
        (
            ("--student", "featnet", "--energy-temperature", "2"),
            "error: --energy-temperature applies to energy temperature rules and energy augmentations; method "
            "'probe' uses neither, so drop it or add one (--temperature-rule energy).",
        ),
    ],
)
def test_refusals_come_before_any_work(
    registered: None, ekd: Any, extra: tuple[str, ...], message: str
) -> None:
    code, out, err = ekd(
        "distill", "--teacher", "featnet", "--method", "probe", *extra, *QUICK, "--epochs", "1"
    )
    assert (code, out, err) == (2, "", message + "\n")
    assert not Path(os.environ["EKD_HOME"]).exists()  # no teacher trained, nothing scored or written


def test_a_teacher_without_features_is_refused(registered: None, ekd: Any) -> None:
    code, _, err = ekd(
        "distill", "--teacher", "logitnet", "--student", "featnet", "--method", "probe", *QUICK
    )
    assert code == 2 and "from the teacher, which model 'logitnet' does not provide" in err


def test_a_single_process_method_is_refused_before_the_launch(
    registered: None, ekd: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("distill", "--teacher", "featnet", "--student", "featnet", "--method", "probe1", *QUICK)
    code, out, err = ekd(*args, "--nproc", "2")
    expected = (
        "error: method 'probe1' runs in one process only (its state, such as a memory bank of the training "
        "set, is not shared between processes), but 2 were asked for; drop --nproc.\n"
    )
    assert (code, out, err) == (2, "", expected)
    monkeypatch.setenv("RANK", "0")  # one rank of a torchrun group of 2
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, out, err = ekd(*args)
    assert (code, err) == (2, expected)
    assert not Path(os.environ["EKD_HOME"]).exists()


KILL = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import feature_kit
feature_kit.register()
from ekdcli.cli.main import main
from ekdcli.method.objective import DistillObjective

calls = 0
original = DistillObjective.__call__

def killing(self, *args):
    global calls
    calls += 1
    if calls == 7:  # epoch 2, step 3: after the checkpoint of epoch 1
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *args)

DistillObjective.__call__ = killing
main(sys.argv[2:])
"""


@pytest.mark.slow
def test_a_killed_run_resumes_bitwise(registered: None, ekd: Any) -> None:
    from ekdcli.store.weights import load_tensors

    _teacher(ekd)
    args = [
        "distill",
        "--teacher",
        "featnet",
        "--student",
        "featnet",
        "--method",
        "probe",
        *QUICK,
        "--epochs",
        "2",
    ]
    code, _, err = ekd(*args, "--run-name", "a")
    assert code == 0, err
    killed = subprocess.run(
        [sys.executable, "-c", KILL, str(HERE), *args, "--run-name", "b"], timeout=300, check=False
    )
    assert killed.returncode == -signal.SIGKILL
    runs = Path(os.environ["EKD_HOME"]) / "runs"
    assert torch.load(runs / "b" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    code, _, err = ekd("distill", "--resume", str(runs / "b"), "--quiet")
    assert code == 0, err
    straight, resumed = (
        load_tensors(runs / "a" / "last.safetensors")[0],
        load_tensors(runs / "b" / "last.safetensors")[0],
    )
    assert set(straight) == set(resumed) and all(torch.equal(straight[k], resumed[k]) for k in straight)
    a, b = (torch.load(runs / r / "checkpoint.pt", weights_only=True)["objective"] for r in "ab")
    ma, mb = a["distiller"]["modules"], b["distiller"]["modules"]
    assert int(ma["steps"]) == 8 and all(torch.equal(ma[k], mb[k]) for k in ma)


PLUGINS_DOC = HERE.parents[1] / "docs" / "plugins.md"


@pytest.mark.slow
def test_the_plugin_guides_feature_distiller_runs_as_written(
    registered: None, ekd: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/plugins.md's hint example: its two files, registered through its hook, then ekd distill."""
    import re

    from ekdcli.sdk.registry import Component
    from ekdcli.store.weights import load_tensors

    blocks = re.findall(
        r"```python\n# (ekd_hint/\S+)\n(.*?)```", PLUGINS_DOC.read_text(encoding="utf-8"), re.S
    )
    assert [name for name, _ in blocks] == ["ekd_hint/__init__.py", "ekd_hint/loss.py"]
    for name, code in blocks:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in ("ekd_hint", "ekd_hint.loss"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    import ekd_hint  # type: ignore[import-not-found]

    def register(name: str, factory: str, **keys: Any) -> None:
        registry("distillers").add(Component("distillers", name, factory, "ekd-hint", **keys))

    ekd_hint.register_distillers(register)
    _teacher(ekd)
    args = ("distill", "--teacher", "featnet", "--student", "featnet", "--method", "hint", *QUICK)
    code, _, err = ekd(*args, "--epochs", "1", "--set", "distiller.w_feat=50", "--run-name", "h")
    assert code == 0, err
    run = Path(os.environ["EKD_HOME"]) / "runs" / "h"
    assert set(load_tensors(run / "last.safetensors")[0]) == set(kit.FeatNet().state_dict())
    modules = torch.load(run / "checkpoint.pt", weights_only=True)["objective"]["distiller"]["modules"]
    assert modules["connector.0.weight"].shape == (12, 12, 1, 1) and "connector.1.running_mean" in modules
    summary = (run / "summary.json").read_text()
    assert '"w_feat": 50.0' in summary and "loss_feat" in (run / "metrics.jsonl").read_text()
    code, _, err = ekd(*args, "--student", "logitnet")
    assert code == 2 and "method 'hint' needs feats, stage_channels from the student" in err


class _Counting(torch.nn.Module):
    """Records the keyword arguments of every forward call of the model it wraps."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x: torch.Tensor, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.inner(x, **kwargs)


@pytest.mark.parametrize(
    ("method", "augment", "options", "teacher_calls"),
    [
        ("kd", None, {}, [{}]),
        ("kd", "he-cutmix", {"rate": 0.5}, [{}]),
        ("kd", "he-cutmix", {"rate": 0.5, "mode": "replace", "source": "online"}, [{}, {}]),
        ("probe", None, {}, [{"return_features": True}]),
        ("probe", "cutmix", {"rate": 0.5}, [{"return_features": True}]),
        ("probe", "he-cutmix", {"rate": 0.5, "source": "online"}, [{"return_features": True}, {}]),
    ],
)
def test_each_model_runs_once_per_step_and_logit_methods_as_before(
    registered: None, method: str, augment: str | None, options: dict[str, Any], teacher_calls: list[Any]
) -> None:
    """A logit method's passes stay ``model(x)``; a feature method's give the features in the same
    passes (online selection: the teacher's clean pass, then the mixed rows alone)."""
    teacher, student, _ = _pair()
    teacher, student = _Counting(teacher), _Counting(student)
    distiller = registry("distillers").get(method).build()
    if method == "probe":
        bind_distiller(distiller, pair_context(student.inner, teacher.inner, ("s", "t"), _data(), None, 1))
    aug = registry("augmentations").get(augment).build(**options) if augment else None
    with torch.no_grad():
        energies = energy(teacher.inner(_batch(40).images), 1.0)
    context = EnergyContext(energies, 1.0, "test") if aug is not None and aug.needs_energy else None
    objective = DistillObjective(teacher, distiller, aug, context)
    objective.setup(Runtime(EngineOptions(device="cpu", precision="fp32")), 2)
    objective(student, _batch(40), 1, torch.Generator().manual_seed(3))
    assert teacher.calls == teacher_calls
    assert student.calls == [{"return_features": True} if method == "probe" else {}]


def test_a_strong_view_method_gets_the_clean_views_features(registered: None) -> None:
    """With ``needs_strong_view`` the teacher's one pass over clean + strong rows gives the clean
    rows' features; the student's clean pass gives its own."""
    from ekdcli.engine.pipeline import make_batches
    from ekdcli.engine.testing import synthetic_dataset

    class StrongProbe(kit.Probe):
        needs_strong_view = True

    teacher, student, _ = _pair()
    probe = StrongProbe()
    bind_distiller(probe, pair_context(student, teacher, ("s", "t"), _data(), None, 1))
    runtime = Runtime(EngineOptions(device="cpu", precision="fp32", channels_last=False))
    teacher, student = _Counting(teacher), _Counting(student)
    objective = DistillObjective(teacher, probe)
    objective.setup(runtime, 1)
    data = synthetic_dataset(train=40, test=8, classes=10, size=8)
    batch = next(iter(make_batches(data, "train", runtime, 16, train=True, generator=torch.Generator())))
    objective(student, batch, 1, torch.Generator().manual_seed(3))
    assert teacher.calls == [{"return_features": True}] and student.calls == [{"return_features": True}, {}]
    (seen,) = kit.Probe.seen
    assert seen["rows"] == 16 and seen["student_rows"] == [16] * 3 and seen["teacher_rows"] == [16] * 3
    with torch.no_grad():
        _, feats = teacher.inner(batch.images, return_features=True)
    for got, want in zip(seen["teacher_feats"], feats["feats"], strict=True):
        assert torch.allclose(got, want, atol=1e-5)


PLUGIN = """
from ekdcli.sdk import hookimpl

FEATURES = {"features": ["feats", "preact_feats", "pooled_feat"], "model_hooks": ["stage_channels"]}


@hookimpl
def register_models(register):
    register("featnet", "feature_kit:FeatNet", info=FEATURES)


@hookimpl
def register_distillers(register):
    info = {"kind": "feature", "features": ["feats", "pooled_feat"], "model_hooks": ["stage_channels"]}
    register("probe", "feature_kit:make_probe", info={**info, "options": {"w_feat": 1.0}})
"""


@pytest.mark.slow
def test_ekd_distill_nproc_2_trains_a_feature_method(tmp_path: Path) -> None:
    """``ekd distill --nproc 2`` (torchrun, gloo) with the probe method of an installed plugin."""
    site = tmp_path / "site"
    (site / "feat_plugin-0.0.1.dist-info").mkdir(parents=True)
    (site / "feat_plugin-0.0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: feat-plugin\nVersion: 0.0.1\n"
    )
    (site / "feat_plugin-0.0.1.dist-info" / "entry_points.txt").write_text(
        "[ekd]\nfeat-plugin = feat_plugin\n"
    )
    (site / "feat_plugin.py").write_text(PLUGIN)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(site), str(HERE), str(HERE.parents[1]), env.get("PYTHONPATH", "")]
    )
    env["OMP_NUM_THREADS"] = "1"
    store = tmp_path / "store"

    def ekd_cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "ekdcli", *args, *QUICK, "--store", str(store)]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)

    done = ekd_cli("train", "--model", "featnet", "--epochs", "1")
    assert done.returncode == 0, done.stderr
    args = ("distill", "--teacher", "featnet", "--student", "featnet", "--method", "probe", "--epochs", "1")
    done = ekd_cli(*args, "--nproc", "2", "--run-name", "two")
    assert done.returncode == 0, done.stderr
    run = store / "runs" / "two"
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    assert checkpoint["world_size"] == 2 and checkpoint["steps_per_epoch"] == 4  # 64 samples, 8 + 8 a step
    modules = checkpoint["objective"]["distiller"]["modules"]
    assert int(modules["steps"]) == 4 and modules["memory"].shape == (64, 12)  # the whole training set's bank

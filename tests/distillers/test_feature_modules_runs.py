"""VID, OFD, CRD and ReviewKD with ekd's zoo models and in real runs: binding, one step, the
ReviewKD layouts of mdistiller's configs, and a killed run that resumes bitwise."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from ekd_plugins.distillers.feature.options_modules import MDISTILLER_PAIRS

from ekdcli.sdk.contracts import DistillBatch, Features, PairContext
from ekdcli.sdk.errors import JobError

MODELS = {
    "resnet32x4": "cifar_resnet:resnet32x4",
    "resnet8x4": "cifar_resnet:resnet8x4",
    "vgg13": "vgg:vgg13",
    "mobilenetv2": "mobilenetv2:mobilenetv2",
    "wrn_40_2": "wrn:wrn_40_2",
    "shufflev1": "shufflenetv1:shufflev1",
    "imagenet/resnet34": "imagenet:resnet34",
    "imagenet/resnet18": "imagenet:resnet18",
    "imagenet/resnet50": "imagenet:resnet50",
    "imagenet/mobilenetv1": "imagenet:mobilenetv1",
}
OPTIONS: dict[str, dict[str, Any]] = {"crd": {"nce_k": 64}}


def zoo(name: str, classes: int) -> torch.nn.Module:
    module, attr = MODELS[name].split(":")
    return getattr(importlib.import_module(f"ekd_plugins.models.{module}"), attr)(num_classes=classes)


def bound(method: str, teacher: str, student: str, size: int = 32, classes: int = 100) -> Any:
    factory = getattr(importlib.import_module(f"ekd_plugins.distillers.feature.{method}"), f"make_{method}")
    distiller = factory(**OPTIONS.get(method, {}))
    torch.manual_seed(0)
    s_model, t_model = zoo(student, classes), zoo(teacher, classes).eval()
    labels = torch.arange(200) % classes
    pair = PairContext(s_model, t_model, student, teacher, classes, 3, (size, size), 200, labels)
    distiller.bind(pair)
    return distiller, s_model, t_model


def features_of(output: dict[str, Any]) -> Features:
    return Features(list(output["feats"]), list(output.get("preact_feats") or []), output["pooled_feat"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "pair", [("resnet32x4", "resnet8x4"), ("vgg13", "mobilenetv2"), ("wrn_40_2", "shufflev1")]
)
@pytest.mark.parametrize("method", ["vid", "ofd", "crd", "reviewkd"])
def test_binds_and_steps_with_zoo_models(method: str, pair: tuple[str, str]) -> None:
    teacher, student = pair
    if method == "ofd" and student == "mobilenetv2":
        with pytest.raises(JobError, match="reads the student's 'preact_feats', which model mobilenetv2"):
            bound(method, teacher, student)
        return
    distiller, s_model, t_model = bound(method, teacher, student)
    distiller.to(torch.device("cpu"))
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    s_logits, s_out = s_model(images, return_features=True)
    with torch.no_grad():
        t_logits, t_out = t_model(images, return_features=True)
    batch = DistillBatch(
        student_logits=s_logits,
        teacher_logits=t_logits,
        labels=torch.tensor([3, 4]),
        indices=torch.tensor([3, 4]),
        epoch=1,
        student_features=features_of(s_out),
        teacher_features=features_of(t_out),
        generator=torch.Generator().manual_seed(2),
    )
    losses = distiller(batch)
    assert set(losses) == {"loss_ce", "loss_feat"}
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_feat"].item() > 0
    sum(losses.values()).backward()
    params = distiller.parameters()
    assert params and all(p.grad is not None for p in params)
    assert any(float(p.grad.abs().sum()) > 0 for p in params)
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in s_model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("teacher", "student", "size"),
    [
        ("resnet32x4", "resnet8x4", 32),
        ("imagenet/resnet34", "imagenet/resnet18", 224),
        ("imagenet/resnet50", "imagenet/mobilenetv1", 224),
    ],
)
def test_reviewkd_derives_mdistillers_hand_written_values(teacher: str, student: str, size: int) -> None:
    classes = 100 if size == 32 else 1000
    distiller, _, _ = bound("reviewkd", teacher, student, size, classes)
    key = (teacher.removeprefix("imagenet/"), student.removeprefix("imagenet/"))
    expected = MDISTILLER_PAIRS[key]["reviewkd"]
    layout = distiller.layout.describe()
    for name, value in expected.items():
        assert layout[name] == value, name


# ------------------------------------------------------------------------------ kill and resume
HERE = Path(__file__).resolve().parent
QUICK = (
    "--data",
    "fake",
    "--limit-train",
    "64",
    "--limit-test",
    "32",
    "--batch-size",
    "16",
    "--device",
    "cpu",
)
QUICK = (*QUICK, "--precision", "fp32", "--quiet")
KILL = """
import os, signal, sys
from ekdcli.cli.main import main
from ekdcli.method.objective import DistillObjective

calls = 0
original = DistillObjective.__call__

def killing(self, *args):
    global calls
    calls += 1
    if calls == 7:  # epoch 2, step 3 of 4: after the checkpoint of epoch 1
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *args)

DistillObjective.__call__ = killing
main(sys.argv[1:])
"""


@pytest.mark.slow
@pytest.mark.parametrize(("method", "extra"), [("crd", ("--set", "distiller.nce_k=16")), ("reviewkd", ())])
def test_a_killed_run_resumes_bitwise(ekd: Any, method: str, extra: tuple[str, ...]) -> None:
    from ekdcli.store.weights import load_tensors

    code, _, err = ekd("train", "--model", "resnet8", *QUICK, "--epochs", "1")
    assert code == 0, err
    args = ["distill", "--teacher", "resnet8", "--student", "resnet8", "--method", method, *QUICK, *extra]
    args += ["--epochs", "2"]
    code, _, err = ekd(*args, "--run-name", "a")
    assert code == 0, err
    killed = subprocess.run([sys.executable, "-c", KILL, *args, "--run-name", "b"], timeout=600, check=False)
    assert killed.returncode == -signal.SIGKILL
    runs = Path(os.environ["EKD_HOME"]) / "runs"
    assert torch.load(runs / "b" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    code, _, err = ekd("distill", "--resume", str(runs / "b"), "--quiet")
    assert code == 0, err
    for name in ("best.safetensors", "last.safetensors"):
        straight, resumed = load_tensors(runs / "a" / name)[0], load_tensors(runs / "b" / name)[0]
        assert set(straight) == set(resumed) and all(torch.equal(straight[k], resumed[k]) for k in straight)
    a, b = (torch.load(runs / r / "checkpoint.pt", weights_only=True)["objective"] for r in "ab")
    ma, mb = a["distiller"]["modules"], b["distiller"]["modules"]
    assert set(ma) == set(mb) and all(torch.equal(ma[k], mb[k]) for k in ma)
    if method == "crd":  # the banks moved, and Z was set once
        assert ma["contrast.memory_v1"].shape == (64, 128) and float(ma["contrast.params"][2]) > 0


@pytest.mark.parametrize(
    ("method", "teacher", "student", "message"),
    [
        ("ofd", "wrn_40_2", "shufflev1", "no trained teacher 'wrn_40_2'"),  # the student needs no BN hook
        ("ofd", "shufflev1", "wrn_40_2", "needs bn_before_relu from the teacher, which model 'shufflev1'"),
        ("ofd", "vgg13", "mobilenetv2", "needs preact_feats from the student, which model 'mobilenetv2'"),
        (
            "reviewkd",
            "vgg13",
            "mobilenetv2",
            "no trained teacher 'vgg13'",
        ),  # preact_feats: the teacher's only
    ],
)
def test_each_model_is_asked_for_what_the_method_reads_from_it(
    ekd: Any, method: str, teacher: str, student: str, message: str
) -> None:
    args = ("distill", "--method", method, "--teacher", teacher, "--student", student, "--data", "fake")
    code, _, err = ekd(*args, "--device", "cpu")
    assert code == 2 and message in err, err

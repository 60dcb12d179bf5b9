"""The eleven feature methods end to end through `ekd distill`, with and without HE-DA: a CIFAR
pair on the tiny CIFAR-100 file, an ImageNet pair on fake 64x64 images, `ekd list distillers`,
and docs/feature-methods.md's worked example with `ekd export` of a FitNet student (the
connectors stay out of every stored and exported file)."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import torch

from ekdcli.jobs.build import build_model
from ekdcli.store.rundir import read_config
from ekdcli.store.weights import load_tensors

METHODS = ("fitnet", "at", "pkt", "rkd", "sp", "nst", "kdsvd", "vid", "ofd", "crd", "reviewkd")
# 64 training images of 100 classes: CRD's 16384 negatives do not exist, 16 do
EXTRA = {"crd": ("--set", "distiller.nce_k=16")}
CPU = ("--device", "cpu", "--precision", "fp32", "--quiet")
SMALL = ("--limit-train", "64", "--limit-test", "32", "--epochs", "1", "--batch-size", "32", *CPU)
HEDA = ("--augment", "he-cutmix", "--rate", "0.5")


def run_ekd(*args: str) -> int:
    from ekdcli.cli.main import main

    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """One store with a resnet20 teacher (1 epoch on 64 images) and its score file, for every test."""
    tiny = Path(os.environ["EKD_SHARED_DATA"]) / "tiny_cifar100.npz"
    if not tiny.is_file():
        pytest.skip(f"{tiny} not found")
    common = ("--store", str(tmp_path_factory.mktemp("feature-cli") / "store"), "--data-root", str(tiny))
    assert run_ekd("train", "--model", "resnet20", *common, *SMALL) == 0
    assert run_ekd("score", "--teacher", "resnet20", *common, "--limit-train", "64", *CPU) == 0
    return common


def check_run(run: Path, student: str, num_classes: int, method: str, augment: str | None) -> None:
    """Exit 0 is not enough: the epoch's two loss terms are finite, the stored weights are exactly the
    student's architecture, and config.toml records the method and the augmentation."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1]
    losses = records[0]["losses"]
    assert set(losses) == {"loss_ce", "loss_feat", *(("mix_kd",) if augment else ())}  # HE-DA's KD term
    assert all(math.isfinite(v) for v in losses.values()), losses
    architecture = set(build_model(student, num_classes, 3).state_dict())
    for name in ("best.safetensors", "last.safetensors"):
        assert set(load_tensors(run / name)[0]) == architecture, name
    config = read_config(run)
    assert config["method"] == method
    assert config.get("augment") == augment
    if augment:
        assert config["rate"] == 0.5


@pytest.mark.slow
@pytest.mark.parametrize("augment", [None, "he-cutmix"])
@pytest.mark.parametrize("method", METHODS)
def test_every_feature_method_distills_through_the_cli(
    cifar: tuple[str, ...], method: str, augment: str | None
) -> None:
    name = f"{method}-{augment or 'plain'}"
    args = ["distill", "--teacher", "resnet20", "--student", "resnet8", "--method", method, *cifar, *SMALL]
    args += [*EXTRA.get(method, ()), *(HEDA if augment else ()), "--run-name", name]
    assert run_ekd(*args) == 0
    check_run(Path(cifar[1]) / "runs" / name, "resnet8", 100, method, augment)


IMAGENET = ("--data", "fake", "--set", "data_options.height=64", "--set", "data_options.width=64")
IMAGENET = (*IMAGENET, "--set", "data_options.n_train=32", "--set", "data_options.n_test=16")


@pytest.mark.slow
def test_an_imagenet_pair_distills_with_at_reviewkd_and_crd(tmp_path: Path) -> None:
    common = ("--store", str(tmp_path / "store"), *IMAGENET)
    assert run_ekd("train", "--model", "imagenet/resnet34", *common, *SMALL) == 0
    pair = ("--teacher", "imagenet/resnet34", "--student", "imagenet/resnet18")
    for method, augment in (("at", None), ("reviewkd", "he-cutmix"), ("crd", None)):
        args = ["distill", *pair, "--method", method, *common, *SMALL, *EXTRA.get(method, ())]
        args += [*(HEDA if augment else ()), "--run-name", method]
        assert run_ekd(*args) == 0, method
        check_run(tmp_path / "store" / "runs" / method, "imagenet/resnet18", 10, method, augment)


def test_ekd_list_distillers_shows_each_feature_method_and_what_it_reads(ekd: Any) -> None:
    code, out, _ = ekd("list", "distillers")
    assert code == 0
    kinds = {line.split()[0]: line.split()[1] for line in out.splitlines() if line and not line[0].isspace()}
    assert {m: kinds[m] for m in METHODS} == dict.fromkeys(METHODS, "feature")
    assert kinds["kd"] == kinds["energy_kd"] == "logit"
    code, out, _ = ekd("list", "distillers", "ofd")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:2] == ["ofd", "feature"]
    assert lines[1].strip() == "reads: preact_feats; model hooks: bn_before_relu"
    options = {line.split()[0]: line.split()[1] for line in lines[3:6]}
    assert options == {"w_ce": "1.0", "w_feat": "-", "connector_kernel": "1"}  # w_feat: 1e-4 on ImageNet
    assert lines[6].strip().startswith("(-: decided by the preset, the teacher/student pair")


def worked_example() -> list[list[str]]:
    """The commands of docs/feature-methods.md's worked example, as a reader types them."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "feature-methods.md").read_text()
    block = text.split("## A worked example", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line)[1:] for line in re.sub(r"\\\n\s*", " ", block).splitlines() if line]


@pytest.mark.slow
def test_the_worked_example_runs_as_written_on_tiny_data(tmp_path: Path, shared_data: Path) -> None:
    commands = worked_example()
    assert [c[0] for c in commands] == ["train", "distill", "distill", "evaluate", "export"]
    tiny = str(shared_data / "tiny_cifar100.npz")
    store = ("--store", str(tmp_path / "store"))
    for args in commands:  # the same commands on the tiny file, a few images, CRD with fewer negatives
        args = [tiny if a == "../shared/data/cifar100.npz" else a for a in args]
        if args[0] in ("train", "distill"):
            args += [*SMALL, *(EXTRA["crd"] if "crd" in args else ())]
        extra = ("--data-root", tiny, "--check", "16") if args[0] == "export" else ()
        assert run_ekd(*args, *store, *extra) == 0, args
    for name in ("fitnet-heda", "crd-heda"):
        check_run(tmp_path / "store" / "runs" / name, "resnet8x4", 100, name.split("-")[0], "he-cutmix")
    # the exported FitNet student: the architecture's tensors, not one of the regressor's
    exported = torch.jit.load(str(tmp_path / "store" / "runs" / "fitnet-heda" / "best.torchscript.pt"))
    state = {k.removeprefix("model."): v for k, v in exported.state_dict().items()}
    architecture = build_model("resnet8x4", 100, 3).state_dict()
    assert set(state) == set(architecture) and not any("conv_reg" in key for key in state)
    assert sum(v.numel() for v in state.values()) == sum(v.numel() for v in architecture.values())

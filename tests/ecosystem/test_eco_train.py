"""The example plugin's components through the real command line: training, and its own command."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("examples_installed")


def test_train_a_plugin_model_on_a_plugin_dataset(run_ekd: Callable[..., Any]) -> None:
    store = Path(os.environ["EKD_HOME"])  # the autouse fixture's private store
    result = run_ekd(
        "train", "--model", "convmixer_tiny", "--data", "digits-lt", "--epochs", "1",
        "--limit-train", "64", "--limit-test", "32",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "convmixer_tiny on digits-lt (the first 64 of 408 training images), 10 classes" in result.stdout

    import torch
    from ekd_example.convmixer import convmixer_tiny

    from ekdcli.store.weights import load_tensors, meta_value

    tensors, metadata = load_tensors(store / "models" / "digits-lt" / "convmixer_tiny.safetensors")
    assert meta_value(metadata, "arch") == "convmixer_tiny" and meta_value(metadata, "dataset") == "digits-lt"
    assert (meta_value(metadata, "num_classes"), meta_value(metadata, "in_channels")) == (10, 1)
    model = convmixer_tiny(10, in_channels=1)
    model.load_state_dict(tensors, strict=True)  # the plugin's own architecture reads its weights back
    assert all(bool(torch.isfinite(t).all()) for t in tensors.values())
    [run_dir] = (store / "runs").iterdir()
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1]


def test_the_plugin_command_reports_misuse_as_one_sentence(run_ekd: Callable[..., Any]) -> None:
    # (its results are tested in-process in examples/plugins/ekd-example/tests)
    bad = run_ekd("class-counts", "--data", "digits-lt", "--option", "imbalance_factor")
    assert bad.returncode == 2
    assert (
        bad.stderr
        == "error: --option takes KEY=VALUE, got 'imbalance_factor'; e.g. --option imbalance_factor=0.05.\n"
    )


@pytest.mark.slow
def test_timm_models_serve_as_teacher_and_student_without_downloading(
    ekd: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import torch

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("ekd-timm tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)  # a weights download would fail here
    store = Path(os.environ["EKD_HOME"])
    quick = ("--epochs", "1", "--limit-train", "32", "--limit-test", "16", "--batch-size", "16", "--json")
    code, out, err = ekd("train", "--model", "timm/lcnet_050", *quick)
    assert code == 0, err
    teacher = store / "models" / "digits" / "timm_lcnet_050.safetensors"
    assert json.loads(out)["weights"] == str(teacher)
    student = "timm/mobilenetv3_small_050"
    code, out, err = ekd(
        "distill", "--teacher", "timm/lcnet_050", "--student", student, "--method", "kd", *quick
    )
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["teacher"], summary["student"], summary["method"]) == ("timm/lcnet_050", student, "kd")

    import timm

    from ekdcli.store.weights import load_tensors, meta_value

    tensors, metadata = load_tensors(Path(summary["run_dir"]) / "best.safetensors")
    assert meta_value(metadata, "arch") == student
    plain = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=10, in_chans=1)
    plain.load_state_dict(tensors, strict=True)  # timm's own parameter names, nothing prefixed
    assert all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point())

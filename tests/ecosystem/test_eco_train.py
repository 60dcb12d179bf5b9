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
    assert "convmixer_tiny on digits-lt (10 classes)" in result.stdout

    import torch
    from ekd_example.convmixer import convmixer_tiny

    from ekdcli.weights import load_tensors, meta_value

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

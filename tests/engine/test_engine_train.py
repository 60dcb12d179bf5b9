"""``ekd train`` end to end: learning on ``fake`` and on the embedded digits, the files it writes,
and ``--resume`` from another directory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ekdcli.config import read_toml
from ekdcli.store.weights import load_tensors, meta_value

FAST = [
    "--model",
    "tiny_cnn",
    "--batch-size",
    "32",
    "--lr",
    "0.1",
    "--precision",
    "fp32",
    "--json",
    "--quiet",
]
DATA = {
    # the embedded default at its native 8x8 (the 32x32 upsampling learns the same, more slowly)
    "digits": (["--data", "digits", "--set", "data_options.size=8"], 10),
    "fake": (
        ["--data", "fake"]
        + [f"--set=data_options.{kv}" for kv in ("n_train=256", "n_test=128", "num_classes=4")]
        + ["--set=data_options.height=16", "--set=data_options.width=16"],
        4,
    ),
}


def train(ekd: Any, *args: str) -> dict[str, Any]:
    code, out, err = ekd("train", *FAST, *args)
    assert code == 0, err
    return json.loads(out)


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
@pytest.mark.parametrize("data", sorted(DATA))
def test_train_learns_and_writes_the_model_and_run_directory(ekd: Any, data: str) -> None:
    flags, classes = DATA[data]
    result = train(ekd, *flags, "--epochs", "5")
    run_dir = Path(result["run_dir"])
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]
    losses = [r["loss"] for r in records]
    assert losses[-1] < 0.5 * losses[0], losses
    chance = 1.0 / classes
    assert result["best_top1"] > 2.2 * chance and result["best_top1"] == max(r["test_top1"] for r in records)
    best_epoch = result["best_epoch"]
    # models/<data>/<model>.safetensors: the best epoch's weights, with where they came from
    weights = Path(result["weights"])
    assert weights == Path(os.environ["EKD_HOME"]) / "models" / result["data"] / "tiny_cnn.safetensors"
    stored, meta = load_tensors(weights)
    best, _ = load_tensors(run_dir / "best.safetensors")
    assert stored.keys() == best.keys() and all((stored[k] == best[k]).all() for k in stored)
    assert meta_value(meta, "top1") == pytest.approx(result["best_top1"])
    assert meta_value(meta, "top5") == pytest.approx(records[best_epoch - 1]["test_top5"])
    assert (meta_value(meta, "epoch"), meta_value(meta, "epochs"), meta_value(meta, "kept")) == (
        best_epoch,
        5,
        "best",
    )
    recipe = meta_value(meta, "recipe")
    assert (recipe["epochs"], recipe["batch_size"], recipe["lr"], recipe["momentum"]) == (5, 32, 0.1, 0.9)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best_top1"] == result["best_top1"] and summary["epochs"] == 5
    environment = json.loads((run_dir / "environment.json").read_text())
    assert (
        environment["precision"] == "fp32" and environment["seed"] == 0 and environment["versions"]["torch"]
    )


def test_keep_last_stores_the_last_epoch(ekd: Any) -> None:
    result = train(ekd, *DATA["fake"][0], "--epochs", "2", "--keep", "last", "--name", "last-one")
    stored, meta = load_tensors(Path(result["weights"]))
    last, _ = load_tensors(Path(result["run_dir"]) / "last.safetensors")
    assert Path(result["weights"]).name == "last-one.safetensors"
    assert all((stored[k] == last[k]).all() for k in stored)
    assert (meta_value(meta, "epoch"), meta_value(meta, "kept")) == (2, "last")
    assert meta_value(meta, "top1") == pytest.approx(result["last_top1"])


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
def test_resume_from_another_directory_uses_the_runs_store(
    ekd: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Path(os.environ["EKD_HOME"])
    first = train(ekd, *DATA["digits"][0], "--epochs", "1", "--run-name", "r")
    run_dir = Path(first["run_dir"])
    recorded = read_toml(run_dir / "config.toml")
    assert recorded["store"] == str(store.resolve())  # the store actually used, as an absolute path
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("EKD_HOME")  # neither the directory nor the environment points at the store
    code, out, err = ekd("train", "--resume", os.path.relpath(run_dir, elsewhere), "--epochs", "2", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert Path(result["run_dir"]) == run_dir and Path(result["weights"]).parent.parent.parent == store
    assert not any(elsewhere.iterdir())  # nothing written here
    assert [json.loads(x)["epoch"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    _, meta = load_tensors(Path(result["weights"]))
    assert meta_value(meta, "epochs") == 2  # epochs of the whole run, not of the resumed part


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
def test_a_new_run_says_which_stored_model_it_replaces(ekd: Any) -> None:
    flags, _ = DATA["fake"]
    first = train(ekd, *flags, "--epochs", "1")
    code, out, err = ekd("train", *[a for a in FAST if a != "--quiet"], *flags, "--epochs", "1")
    assert code == 0, err
    stored = meta_value(load_tensors(first["weights"])[1], "top1")
    assert 0.0 <= stored <= 1.0  # a fraction, shown in percent
    assert f"replacing {first['weights']} (top-1 {100 * stored:.2f}%, from {first['run_dir']})" in err + out
    assert json.loads(out)["weights"] == first["weights"]


def test_train_prints_its_run_directory_once_and_counts_the_images_it_trains_on(ekd: Any) -> None:
    flags, _ = DATA["fake"]
    args = [a for a in FAST if a != "--quiet"]
    code, out, err = ekd("train", *args, *flags, "--epochs", "1", "--limit-train", "64")
    assert code == 0, err
    result = json.loads(out)  # with --json the messages are on stderr
    assert err.count(result["run_dir"]) == 1
    assert "ekd train: tiny_cnn on fake-" in err and "(the first 64 of 256 training images), 4 classes" in err

"""Finite or nothing: no save writes NaN or infinity, and a diverged run stops, keeping what was good."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from rel_helpers import DATA, RUN, SCORES, TEACHER, one_line_error, snapshot

from ekdcli.engine.checkpoint import load_checkpoint, save_checkpoint
from ekdcli.method.scoring import load_scores, save_scores
from ekdcli.store.weights import load_tensors, non_finite, require_finite, save_tensors
from ekdcli.util.errors import JobError

# one optimizer step per epoch at an absurd learning rate: the loss of each step is computed before
# its update, so the loss check alone never sees the weights that the last step broke
DIVERGE = (
    "train", "--model", "tiny_cnn", *DATA, "--limit-train", "32", "--limit-test", "16",
    "--batch-size", "32", "--lr", "1e6", "--epochs", "4",
)  # fmt: skip


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_store_file_is_never_replaced_by_non_finite_weights(tmp_path: Path, bad: float) -> None:
    target = tmp_path / "models" / "m.safetensors"
    save_tensors(target, {"w": torch.ones(3), "steps": torch.tensor([5])}, {"top1": 0.5})
    before = snapshot(tmp_path)
    weights = {"w": torch.tensor([1.0, bad, 2.0]), "steps": torch.tensor([6])}
    with pytest.raises(JobError) as err:
        save_tensors(target, weights, {"top1": 0.9})
    assert err.value.message == (
        f"{target} would hold NaN or infinite values (w), so it was not written; the previous file is kept."
    )
    assert snapshot(tmp_path) == before


def test_non_finite_finds_tensors_in_nested_state() -> None:
    state = {
        "model": {"a": torch.zeros(2), "b": torch.tensor([float("nan")])},
        "optimizer": {"state": {0: {"momentum_buffer": torch.tensor([float("inf")])}}, "lr": float("inf")},
        "rng": torch.zeros(4, dtype=torch.uint8),
        "history": [{"loss": float("nan")}],  # numbers outside tensors are the run's records, not weights
    }
    assert non_finite(state) == ["model.b", "optimizer.state.0.momentum_buffer"]
    with pytest.raises(JobError, match=r"X would hold NaN or infinite values \(model.b, optimizer"):
        require_finite(state, "X")
    require_finite({"model": {"a": torch.zeros(2)}, "best": -math.inf}, "fine")


def test_a_checkpoint_with_non_finite_tensors_is_not_written(store: Path) -> None:
    run = store / RUN
    before = snapshot(run)
    payload = {k: v for k, v in load_checkpoint(run).items() if k != "format"}
    payload["model"] = {
        k: v * float("nan") if v.is_floating_point() else v for k, v in payload["model"].items()
    }
    with pytest.raises(JobError, match="checkpoint.pt would hold NaN or infinite values"):
        save_checkpoint(run, payload)
    assert snapshot(run) == before


def test_a_score_table_with_non_finite_energies_is_not_written(store: Path) -> None:
    table = load_scores(store / SCORES)
    table.energies[3] = float("nan")
    before = snapshot(store)
    with pytest.raises(JobError, match="would hold NaN or infinite values"):
        save_scores(store / SCORES, table)
    assert snapshot(store) == before


def test_a_diverged_run_stops_keeps_the_last_finite_checkpoint_and_the_store_file(
    store: Path, ekd: Any
) -> None:
    good = (store / TEACHER).read_bytes()
    code, out, err = ekd(*DIVERGE, "--keep", "last", "--run-name", "div", "--quiet")
    line = one_line_error(code, err, 1, "training diverged at epoch ", "nothing of this epoch was saved")
    epoch = int(line.split("diverged at epoch ")[1].split(":")[0])
    assert epoch >= 2 and f"the checkpoint of epoch {epoch - 1} in" in line and "lower --lr" in line
    assert (store / TEACHER).read_bytes() == good  # the good store file is untouched
    run = store / "runs" / "div"
    checkpoint = load_checkpoint(run)
    assert checkpoint["epoch"] == epoch - 1 and not non_finite(checkpoint)
    for name in ("last", "best"):
        tensors, metadata = load_tensors(run / f"{name}.safetensors")
        assert not non_finite(tensors)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, epoch))
    assert not (run / "summary.json").exists()
    # the kept checkpoint resumes (and diverges again at the same epoch: the learning rate is kept)
    code, _, err = ekd("train", "--resume", str(run), "--keep", "last", "--quiet")
    assert code == 1 and f"diverged at epoch {epoch}" in err
    assert (store / TEACHER).read_bytes() == good


def test_lr_inf_never_reaches_the_store(store: Path, refused: Any) -> None:
    for value in ("inf", "nan"):
        refused(("train", "--model", "tiny_cnn", *DATA, "--lr", value, "--keep", "last"), 2, "--lr")
        refused(("train", "--model", "tiny_cnn", *DATA, "--set", f"train.lr={value}"), 2, "'train.lr'")


def test_a_score_of_a_teacher_with_huge_logits_is_refused_not_saved(
    store: Path, ekd: Any, tmp_path: Path
) -> None:
    # finite weights whose logits overflow to infinity: the energies would be -inf
    weights, metadata = load_tensors(store / TEACHER)
    weights["fc.bias"] = torch.full_like(weights["fc.bias"], 3e38)
    weights["fc.weight"] = torch.full_like(weights["fc.weight"], 3e38)
    from safetensors.torch import save_file

    save_file(weights, str(tmp_path / "huge.safetensors"), metadata=metadata)
    before = snapshot(tmp_path)
    code, _, err = ekd("score", "--teacher", "huge.safetensors", *DATA, "--quiet")
    one_line_error(code, err, 1, "gives non-finite logits for", "so no score file was written")
    assert snapshot(tmp_path) == before

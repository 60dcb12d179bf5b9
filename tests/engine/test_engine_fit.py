"""fit(): learning, run-directory files, bitwise resume, Ctrl-C, non-finite loss."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ekdcli.engine.loop import FitResult, fit
from ekdcli.engine.objective import CrossEntropyObjective, StepOutput
from ekdcli.engine.options import EngineOptions
from ekdcli.engine.recipe import Recipe
from ekdcli.engine.testing import TinyNet, synthetic_dataset
from ekdcli.store.weights import load_tensors, meta_value
from ekdcli.util.errors import JobError, UsageError

RECIPE = Recipe(epochs=3, batch_size=32, lr=0.1, milestones=(2,))  # 128 samples: 4 steps per epoch


def options(precision: str = "fp32") -> EngineOptions:
    return EngineOptions(device="cpu", precision=precision, quiet=True, seed=7)


def run(run_dir: Path | None, objective=None, precision: str = "fp32", **kwargs) -> FitResult:  # noqa: ANN001
    torch.manual_seed(kwargs.pop("init_seed", 0))
    data = synthetic_dataset(train=128, test=40)
    model = TinyNet(dropout=0.3)  # dropout: the global torch RNG state matters on resume
    return fit(model, data, objective or NoisyObjective(), RECIPE, options(precision), run_dir, **kwargs)


class NoisyObjective(CrossEntropyObjective):
    """Cross-entropy on inputs jittered from the engine's generator (its state matters on resume)."""

    def __call__(self, model, batch, epoch, generator) -> StepOutput:  # noqa: ANN001
        noise = torch.randn(batch.images.shape, generator=generator, device=batch.images.device)
        batch.images = batch.images + 0.1 * noise
        return super().__call__(model, batch, epoch, generator)


class ScriptedObjective(NoisyObjective):
    """Cross-entropy that, at one call, sends itself Ctrl-C or returns NaN (1-based call count)."""

    def __init__(self, sigint_at: int | None = None, nan_at: int | None = None) -> None:
        super().__init__()
        self.calls, self.sigint_at, self.nan_at = 0, sigint_at, nan_at

    def __call__(self, model, batch, epoch, generator) -> StepOutput:  # noqa: ANN001
        self.calls += 1
        out = super().__call__(model, batch, epoch, generator)
        if self.calls == self.sigint_at:
            os.kill(os.getpid(), signal.SIGINT)
        if self.calls == self.nan_at:
            out.losses["loss_ce"] = out.losses["loss_ce"] * float("nan")
        return out


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_training_learns_the_synthetic_task() -> None:
    result = run(None)
    losses = [record["loss"] for record in result.history]
    assert losses[-1] < 0.7 * losses[0]
    assert result.last_top1 > 0.60  # 4 classes: chance is 25 %
    assert result.best_top1 >= result.last_top1 and 1 <= result.best_epoch <= 3
    assert result.epochs_run == 3 and [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.history[0]["lr"] == pytest.approx(0.1) and result.history[2]["lr"] == pytest.approx(0.01)


def test_run_directory_files_read_back(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run(run_dir, config_text='model = "tiny"\n', metadata={"architecture": "tiny"})
    assert (run_dir / "config.toml").read_text() == 'model = "tiny"\n'
    environment = json.loads((run_dir / "environment.json").read_text())
    assert environment["versions"]["torch"] == torch.__version__ and environment["precision"] == "fp32"
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    for line, record in zip(lines, result.history, strict=True):
        assert line["test_top1"] == pytest.approx(record["test_top1"])
        assert {
            "loss",
            "losses",
            "lr",
            "images_per_s",
            "seconds",
            "test_top5",
            "test_loss",
            "train_top1",
            "train_top5",
        } <= set(line)
        assert line["losses"]["loss_ce"] == pytest.approx(line["loss"])
        assert line["train_top5"] == 1.0  # 4 classes: the true one is always among the top 5
    last, last_meta = load_tensors(run_dir / "last.safetensors")
    assert_same_weights(last, result.last_state)
    assert meta_value(last_meta, "epoch") == 3 and meta_value(last_meta, "architecture") == "tiny"
    assert meta_value(last_meta, "top1") == pytest.approx(result.last_top1)
    best, best_meta = load_tensors(run_dir / "best.safetensors")
    assert meta_value(best_meta, "epoch") == result.best_epoch
    assert_same_weights(best, result.best_state)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best_top1"] == pytest.approx(result.best_top1) and summary["epochs"] == 3
    assert summary["objective"] == {"objective": "cross_entropy", "label_smoothing": 0.0}
    assert summary["device"] == "cpu" and summary["precision"] == "fp32"
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 3 and checkpoint["step"] == 12
    assert not list(run_dir.glob(".*.tmp"))  # no temporary files left behind


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_resume_after_a_stop_is_bitwise_identical(tmp_path: Path, precision: str) -> None:
    straight = run(tmp_path / "a", precision=precision)
    stopped = run(tmp_path / "b", precision=precision, stop_after_epoch=1)
    assert stopped.epochs_run == 1 and not (tmp_path / "b" / "summary.json").exists()
    resumed = run(tmp_path / "b", precision=precision, resume=True, init_seed=99)
    assert resumed.epochs_run == 2
    assert_same_weights(resumed.last_state, straight.last_state)
    assert resumed.best_top1 == straight.best_top1 and resumed.best_epoch == straight.best_epoch
    metrics = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [m["loss"] for m in metrics] == [r["loss"] for r in straight.history]


# Run in a fresh interpreter: the objective kills its own process (SIGKILL, no clean-up at all)
# at call 7 = epoch 2 step 3, after the checkpoint of epoch 1 was written.
KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import test_engine_fit as t

class Killed(t.NoisyObjective):
    calls = 0

    def __call__(self, model, batch, epoch, generator):
        Killed.calls += 1
        if Killed.calls == 7:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(model, batch, epoch, generator)

t.run(Path(sys.argv[2]), objective=Killed())
"""


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
def test_resume_after_a_real_kill_is_bitwise_identical(tmp_path: Path) -> None:
    straight = run(tmp_path / "a")
    run_dir = tmp_path / "b"
    here = str(Path(__file__).parent)
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, here, str(run_dir)], timeout=300, check=False)
    assert killed.returncode == -signal.SIGKILL
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    resumed = run(run_dir, resume=True, init_seed=99)  # another init: the checkpoint must win
    assert resumed.epochs_run == 2
    assert_same_weights(resumed.last_state, straight.last_state)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]


class RankedLogits(NoisyObjective):
    """Trains on cross-entropy but reports logits that put each sample's label at rank index % 7."""

    def __call__(self, model, batch, epoch, generator) -> StepOutput:  # noqa: ANN001
        out = super().__call__(model, batch, epoch, generator)
        classes = out.logits.shape[1]
        rank = batch.indices % 7
        position = (torch.arange(classes)[None, :] - batch.labels[:, None] + rank[:, None]) % classes
        out.logits = -position.float()  # the label's score is -rank: rank 0 is the top
        return out


def test_train_top1_and_top5_count_the_reported_logits() -> None:
    data = synthetic_dataset(train=128, test=16, classes=10)
    recipe = Recipe(epochs=1, batch_size=32, lr=0.1)  # 4 whole batches: every index once
    result = fit(TinyNet(classes=10), data, RankedLogits(), recipe, options(), None)
    top1 = sum(1 for i in range(128) if i % 7 == 0) / 128
    top5 = sum(1 for i in range(128) if i % 7 < 5) / 128
    assert result.history[0]["train_top1"] == pytest.approx(top1)
    assert result.history[0]["train_top5"] == pytest.approx(top5)


def test_ctrl_c_saves_a_mid_epoch_checkpoint_that_resumes_exactly(tmp_path: Path) -> None:
    straight = run(tmp_path / "a")
    run_dir = tmp_path / "b"
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs as a background job
    with pytest.raises(JobError) as caught:
        run(run_dir, objective=ScriptedObjective(sigint_at=6))  # epoch 2, step 2
    assert caught.value.message == f"interrupted at epoch 2 step 2; resume with --resume {run_dir}"
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["batches_done"], checkpoint["step"]) == (1, 2, 6)
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler restored
    resumed = run(run_dir, resume=True)
    assert_same_weights(resumed.last_state, straight.last_state)
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in straight.history])


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(JobError, match=r"non-finite loss at epoch 2 step 3 \(loss_ce=nan\)") as caught:
        run(run_dir, objective=ScriptedObjective(nan_at=7))
    assert "checkpoint of epoch 1" in caught.value.message
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["batches_done"] == 0
    last, meta = load_tensors(run_dir / "last.safetensors")
    assert meta_value(meta, "epoch") == 1
    assert_same_weights(last, checkpoint["model"])
    assert all(torch.isfinite(t.float()).all() for t in last.values())
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (run_dir / "summary.json").exists()


@pytest.mark.parametrize("clip", [None, 0.01])
def test_gradient_clipping_bounds_the_first_step(clip: float | None) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    names = [name for name, _ in model.named_parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = synthetic_dataset(train=32, test=8)
    # one plain SGD step (no momentum, no decay): the update is -lr * (clipped) gradient
    recipe = Recipe(epochs=1, batch_size=32, lr=1.0, momentum=0.0, weight_decay=0.0, grad_clip=clip)
    after = fit(model, data, CrossEntropyObjective(), recipe, options(), None).last_state
    step = torch.cat([(after[k] - before[k]).flatten() for k in names]).norm().item()
    if clip is None:
        assert step > 0.1  # the unclipped gradient is far larger than the clip below
    else:
        assert step == pytest.approx(clip, rel=1e-4)


def test_guards_on_run_directories(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no checkpoint at"):
        run(tmp_path / "missing", resume=True)
    with pytest.raises(UsageError, match="resuming needs a run directory"):
        run(None, resume=True)
    run(tmp_path / "done", stop_after_epoch=1)
    with pytest.raises(UsageError, match="already holds a run; resume it with --resume"):
        run(tmp_path / "done")
    torch.manual_seed(0)
    with pytest.raises(UsageError, match="other values of lr"):
        changed = Recipe(epochs=3, batch_size=32, lr=0.5, milestones=(2,))
        data = synthetic_dataset(train=128, test=40)
        fit(TinyNet(), data, CrossEntropyObjective(), changed, options(), tmp_path / "done", resume=True)


def test_objective_without_losses_is_rejected() -> None:
    class Empty(NoisyObjective):
        def __call__(self, model, batch, epoch, generator) -> StepOutput:  # noqa: ANN001
            return StepOutput(losses={})

    with pytest.raises(UsageError, match="returned no loss terms"):
        run(None, objective=Empty())


def test_history_values_are_finite_numbers() -> None:
    result = run(None)
    for record in result.history:
        assert all(math.isfinite(record[k]) for k in ("loss", "lr", "test_top1", "test_loss", "images_per_s"))


def test_ema_evaluates_and_keeps_the_moving_average_and_resumes_it(tmp_path: Path) -> None:
    import dataclasses

    from ekdcli.engine.ema import WeightAverage

    data = synthetic_dataset(train=128, test=40)
    recipe = dataclasses.replace(RECIPE, epochs=2, ema=0.9)
    torch.manual_seed(0)
    model = TinyNet()
    average = WeightAverage(model, 0.9)  # the same start as the engine's
    seen: list[dict[str, torch.Tensor]] = []

    class Recording(CrossEntropyObjective):
        def __call__(self, net, batch, epoch, generator) -> StepOutput:  # noqa: ANN001
            seen.append({k: v.detach().clone() for k, v in net.state_dict().items()})
            return super().__call__(net, batch, epoch, generator)

    result = fit(model, data, Recording(), recipe, options(), tmp_path / "run")
    final = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for weights in [*seen[1:], final]:  # the weights after each optimizer step
        shadow = TinyNet()
        shadow.load_state_dict(weights)
        average.update(shadow)
    for key, value in average.state_dict().items():
        assert torch.allclose(result.last_state[key], value, atol=1e-6), key
    assert not torch.equal(result.last_state["fc.weight"], final["fc.weight"])  # the average, not the model
    stored, _ = load_tensors(tmp_path / "run" / "last.safetensors")
    assert torch.equal(stored["fc.weight"], result.last_state["fc.weight"])


def test_an_ema_run_resumes_bitwise(tmp_path: Path) -> None:
    import dataclasses

    def ema_run(run_dir: Path, **kwargs) -> FitResult:  # noqa: ANN003
        torch.manual_seed(kwargs.pop("init_seed", 0))
        recipe = dataclasses.replace(RECIPE, ema=0.9)
        data = synthetic_dataset(train=128, test=40)
        return fit(TinyNet(dropout=0.3), data, NoisyObjective(), recipe, options(), run_dir, **kwargs)

    straight = ema_run(tmp_path / "a")
    ema_run(tmp_path / "b", stop_after_epoch=1)
    resumed = ema_run(tmp_path / "b", resume=True, init_seed=99)  # the checkpoint's average must win
    assert_same_weights(resumed.last_state, straight.last_state)
    assert resumed.best_top1 == straight.best_top1

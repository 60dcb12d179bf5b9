"""The commands as two CPU (gloo) processes: ``torchrun -m ekdcli train|distill`` and ``ekd score --nproc 2``.

One torchrun ``train`` is shared by the tests (module fixture); the score and distill runs use its
weights as their teacher.  Each rank trains on its own shard; only rank 0 writes and speaks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from ekdcli.cli.main import main
from ekdcli.method.scoring import load_scores
from ekdcli.store.weights import load_tensors

REPO = Path(__file__).resolve().parents[2]
CONFIG = """
data = "fake"
teacher = "resnet8"
student = "tiny_cnn"
recipe = "quick"
batch_size = 32
lr = 0.05
device = "cpu"
precision = "fp32"

[data_options]
n_train = 192
n_test = 96
num_classes = 4
seed = 3
"""
DATA_KEY = "fake-n_test96-n_train192-num_classes4-seed3"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
RUN_FILES = {
    "best.safetensors",
    "checkpoint.pt",
    "config.toml",
    "environment.json",
    "last.safetensors",
    "metrics.jsonl",
    "run.log",
    "curves.png",
    "summary.json",
}


@dataclass
class Done:
    code: int
    out: str
    err: str


def run(workspace: Path, *argv: str) -> Done:
    env = {k: v for k, v in os.environ.items() if k not in ("EKD_HOME", "RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(list(argv), cwd=workspace, env=env, capture_output=True, text=True, timeout=240)
    return Done(done.returncode, done.stdout, done.stderr)


def files_under(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Done]:
    """``torchrun --nproc_per_node 2 -m ekdcli train``: 2 epochs, 128 samples, batch 32 (16 per rank),
    tracked with TensorBoard."""
    workspace = tmp_path_factory.mktemp("ddp")
    (workspace / "ekd.toml").write_text(f'store = "{workspace / "store"}"\n' + CONFIG)
    args = ["--model", "resnet8", "--epochs", "2", "--limit-train", "128", "--json", "--track", "tensorboard"]
    return workspace, run(workspace, *TORCHRUN, "-m", "ekdcli", "train", *args)


@pytest.fixture
def in_workspace(trained: tuple[Path, Done], monkeypatch: pytest.MonkeyPatch) -> Path:
    workspace, _ = trained
    monkeypatch.chdir(workspace)
    monkeypatch.delenv("EKD_HOME", raising=False)
    return workspace


def test_torchrun_train_writes_one_set_of_files(trained: tuple[Path, Done]) -> None:
    workspace, done = trained
    assert done.code == 0, done.err
    result = json.loads(done.out)  # one JSON document on stdout: rank 1 printed nothing
    assert done.err.count("ekd train: resnet8 on") == 1  # with --json messages go to stderr, rank 0's only
    store = workspace / "store"
    (run_dir,) = (store / "runs").iterdir()  # both ranks named the same run directory
    assert Path(result["run_dir"]) == run_dir
    model_file = store / "models" / DATA_KEY / "resnet8.safetensors"
    assert Path(result["weights"]) == model_file
    # Nothing else anywhere in the store: no second run dir, no duplicate or temporary files.
    expected = [Path("models", DATA_KEY, "resnet8.safetensors")]
    expected += [Path("runs", run_dir.name, name) for name in RUN_FILES]
    # rank 0 alone tracks: one TensorBoard event file
    (events,) = (run_dir / "tensorboard").iterdir()
    expected.append(events.relative_to(store))
    assert files_under(store) == sorted(expected)
    log = (run_dir / "run.log").read_text().splitlines()
    assert [line.split()[:2] for line in log if line.startswith("epoch ")] == [
        ["epoch", "1/2"],
        ["epoch", "2/2"],
    ]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert json.loads((run_dir / "environment.json").read_text())["world_size"] == 2
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["best_top1"] == result["best_top1"]
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert len(checkpoint["rank_rng"]) == 2  # both ranks trained
    # 128 samples, global batch 32 split 16 + 16: 4 steps per epoch, each image seen once.
    assert checkpoint["steps_per_epoch"] == 4 and checkpoint["step"] == 8
    stored, _ = load_tensors(model_file)
    best, _ = load_tensors(run_dir / "best.safetensors")
    assert stored.keys() == best.keys() and all(torch.equal(stored[k], best[k]) for k in stored)


def test_score_nproc_2_equals_one_process(
    in_workspace: Path, trained: tuple[Path, Done], capsys: pytest.CaptureFixture[str]
) -> None:
    assert trained[1].code == 0, trained[1].err
    two = in_workspace / "two.safetensors"
    done = run(
        in_workspace, sys.executable, "-m", "ekdcli", "score", "--nproc", "2", "--out", str(two), "--json"
    )
    assert done.code == 0, done.err
    result = json.loads(done.out)
    assert result["computed"] is True and Path(result["scores"]) == two
    assert done.err.count("ekd score: teacher resnet8") == 1
    assert two.with_suffix(".png").is_file()

    one = in_workspace / "one.safetensors"
    main(["score", "--out", str(one), "--json"])  # one process, in this one (returns on success)
    alone = json.loads(capsys.readouterr().out)

    a, b = load_scores(two), load_scores(one)
    assert a.energies.shape == (192,)
    assert torch.allclose(a.energies.double(), b.energies.double(), atol=1e-6, rtol=0)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.predictions, b.predictions)
    assert torch.allclose(a.confidence, b.confidence, atol=1e-6, rtol=0)
    # Energies from the gathered logits, recomputed here in float64: E = -4 * logsumexp(z / 4).
    assert a.logits is not None and b.logits is not None and a.logits.shape == (192, 4)
    assert torch.allclose(a.logits, b.logits, atol=1e-5, rtol=0)
    energy = -4.0 * torch.logsumexp(a.logits.double() / 4.0, dim=1)
    assert torch.allclose(energy, a.energies.double(), atol=1e-5, rtol=0)
    assert (a.meta.teacher_sha256, a.meta.dataset_fingerprint) == (
        b.meta.teacher_sha256,
        b.meta.dataset_fingerprint,
    )
    assert result["summary"] == alone["summary"]


def test_torchrun_distill_scores_then_trains_on_two_ranks(
    in_workspace: Path, trained: tuple[Path, Done]
) -> None:
    assert trained[1].code == 0, trained[1].err
    runs_before = set((in_workspace / "store" / "runs").iterdir())
    args = [
        "--method",
        "energy_kd",
        "--epochs",
        "1",
        "--limit-train",
        "128",
        "--run-name",
        "ddp-distill",
        "--json",
    ]
    done = run(in_workspace, *TORCHRUN, "-m", "ekdcli", "distill", *args)
    assert done.code == 0, done.err
    result = json.loads(done.out)
    assert done.err.count("scored the training set with the teacher first") == 1
    score_file = in_workspace / "store" / "scores" / DATA_KEY / "resnet8.safetensors"
    scores = load_scores(score_file)  # the 128 samples the run trains on (docs/method.md#scoring)
    assert scores.energies.shape == (128,) and scores.meta.limit_train == 128
    assert sum(result["objective"]["distiller"]["train_counts"].values()) == 128
    (run_dir,) = set((in_workspace / "store" / "runs").iterdir()) - runs_before
    assert run_dir.name == "ddp-distill" and Path(result["run_dir"]) == run_dir
    assert {p.name for p in run_dir.iterdir()} == RUN_FILES
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    assert json.loads((run_dir / "summary.json").read_text())["world_size"] == 2

"""Two CPU processes (gloo) through the same fit(): same weights on both ranks, one set of files."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.multiprocessing as mp

from ekdcli.engine.options import EngineOptions
from ekdcli.engine.predict import predict
from ekdcli.engine.runtime import Runtime
from ekdcli.engine.testing import TinyNet, ddp_worker, synthetic_dataset
from ekdcli.store.weights import load_tensors


def test_two_process_run(tmp_path: Path) -> None:
    run_dir, out_dir = tmp_path / "run", tmp_path / "out"
    out_dir.mkdir()
    settings = {"epochs": 2, "train": 128, "test": 37, "batch_size": 32}
    mp.spawn(
        ddp_worker,
        args=(2, str(tmp_path / "init"), str(run_dir), str(out_dir), settings),
        nprocs=2,
        join=True,
    )
    rank0 = torch.load(out_dir / "rank0.pt", weights_only=True)
    rank1 = torch.load(out_dir / "rank1.pt", weights_only=True)
    for key, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][key]), key  # BN statistics included
    assert rank0["top1"] == rank1["top1"]
    # predict: every rank holds the whole test set in order, equal to a one-process pass.
    assert rank0["logits"].shape == (37, 4) and torch.equal(rank0["logits"], rank1["logits"])
    data = synthetic_dataset(train=128, test=37)
    assert torch.equal(rank0["labels"], data.test_labels)
    model = TinyNet()
    model.load_state_dict(rank0["state"])
    alone, _ = predict(
        model, data, "test", Runtime(EngineOptions(device="cpu", precision="fp32")), batch_size=8
    )
    assert torch.allclose(alone, rank0["logits"], atol=1e-6)
    # Only rank 0 wrote, once per epoch.
    names = sorted(p.name for p in run_dir.iterdir())
    expected = ["best.safetensors", "checkpoint.pt", "config.toml", "environment.json", "last.safetensors"]
    assert names == sorted([*expected, "metrics.jsonl", "run.log", "summary.json"])
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    record = json.loads(lines[-1])
    assert record["test_top1"] == rank0["top1"]
    weights, _ = load_tensors(run_dir / "last.safetensors")
    assert all(torch.equal(weights[k], rank0["state"][k]) for k in weights)
    environment = json.loads((run_dir / "environment.json").read_text())
    assert environment["world_size"] == 2
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    states = checkpoint["rank_rng"]
    assert len(states) == 2 and not torch.equal(states[0]["augment"], states[1]["augment"])
    # 2 ranks x 16 samples per step, 4 steps per epoch: every image counted once.
    assert checkpoint["step"] == 8 and checkpoint["steps_per_epoch"] == 4

"""``ekd evaluate`` of several runs against the bare test-set forward passes it cannot avoid.

Makes ``--runs`` CIFAR-100 runs (resnet8 students trained one epoch with ``ekd train`` on the first
``--train-images`` training images, one seed each), then times, side by side in each round:

* ``forward passes``: each run's best weights over the whole test split (the engine's eval
  batches, fp32 as ``ekd evaluate`` uses), the data and models already in memory: the least an
  evaluation can cost;
* ``ekd evaluate``: the job itself, in this process, with an empty evaluation cache: it loads the
  data, resolves the runs, loads and hashes the weights, runs the same passes and computes every
  metric (NLL, ECE, per-class accuracy, the runs' history);
* ``ekd evaluate, cached``: the same call again with the cache kept.

Sides alternate within each round; medians are reported, with the data loading timed alone.

    python benchmarks/evaluate.py --data /work/shared/data/cifar100.npz --runs 4 --train-images 4000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ekdcli.config import Config, resolve

DATA = Path("/work/shared/data/cifar100.npz")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="a CIFAR-100 .npz")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--train-images", type=int, default=4000, help="images each run trains on")
    parser.add_argument("--model", default="resnet8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", type=Path, help="keep the runs here (default: a temporary store)")
    parser.add_argument("--json", type=Path, help="write every round's times here")
    return parser.parse_args()


def make_runs(base: Config, args: argparse.Namespace) -> list[str]:
    """``ekd train`` runs r0..rN-1 in the store (kept when they exist already)."""
    from ekdcli.jobs.train import run_train

    names = []
    for seed in range(args.runs):
        name = f"r{seed}"
        if not (Path(base.store) / "runs" / name / "summary.json").is_file():
            run = dataclasses.replace(
                base, model=args.model, epochs=1, limit_train=args.train_images, seed=seed, run_name=name
            )
            run_train(run, name=f"{args.model}-{name}")
        names.append(name)
    return names


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    args = parse_args()
    root = args.store or Path(tempfile.mkdtemp(prefix="ekd-bench-evaluate-"))
    base = resolve({"data": "cifar100", "data_root": str(args.data), "store": str(root), "quiet": True})
    try:
        names = make_runs(base, args)
        report(args, base, names, measure(args, base, names))
    finally:
        if args.store is None:
            shutil.rmtree(root, ignore_errors=True)


def measure(args: argparse.Namespace, base: Config, names: list[str]) -> dict[str, list[float]]:
    from ekdcli.engine import EngineOptions, Runtime, predict
    from ekdcli.jobs.build import dataset_key, load_dataset, load_trained
    from ekdcli.jobs.common import open_store
    from ekdcli.jobs.evaluate import run_evaluate

    dataset = load_dataset(base)
    runtime = Runtime(EngineOptions(device="auto", precision="fp32", quiet=True))
    models = [
        load_trained(str(Path(base.store) / "runs" / n / "best.safetensors"), dataset, dataset_key(base), open_store(base), "model").model
        for n in names
    ]  # fmt: skip
    cache = Path(base.store) / "cache" / "evaluations"

    def passes() -> None:
        for model in models:
            predict(model, dataset, "test", runtime)

    def evaluate_cold() -> None:
        shutil.rmtree(cache, ignore_errors=True)
        run_evaluate(base, names, "test", None, "best")

    def evaluate_cached() -> None:
        run_evaluate(base, names, "test", None, "best")

    sides = {
        "forward passes": passes,
        "ekd evaluate": evaluate_cold,
        "ekd evaluate, cached": evaluate_cached,
        "data loading": lambda: load_dataset(base),
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    passes()  # warm-up: first-call allocations and thread pools
    for _ in range(args.rounds):
        for name, call in sides.items():
            times[name].append(timed(call))
    return times


def report(args: argparse.Namespace, base: Config, names: list[str], times: dict[str, list[float]]) -> None:
    import torch

    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = median["ekd evaluate"] / median["forward passes"]
    cached = median["ekd evaluate, cached"] / median["forward passes"]
    print(
        f"{len(names)} {args.model} runs ({args.train_images} training images, 1 epoch) on {args.data.name} test, "
        f"{torch.get_num_threads()} torch threads, medians of {args.rounds} rounds"
    )
    for name, value in median.items():
        print(f"  {name:<22} {value:8.2f} s")
    print(f"  ekd evaluate / forward passes = {ratio:.3f} (target <= 1.10); cached: {cached:.3f}")
    if args.json:
        record = {"runs": len(names), "model": args.model, "train_images": args.train_images}
        record |= {"rounds": times, "median": median, "ratio": ratio, "cached_ratio": cached}
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The scoring pass (what ``ekd score`` runs) against the teacher's raw batched forward, side by side.

``ekd score`` runs the frozen teacher once over the training set through the engine's eval
batches (on-device uint8 images, fused normalize, fp32 unless configured), gathers the logits
and turns them into energies.  The raw side is the least a scoring pass can cost: the same
teacher, eval mode, no_grad, over a pre-normalized float tensor in batches of the same size.
Sides alternate within each round and medians are reported.

    python benchmarks/score.py --teacher resnet32x4 --subset 2048 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from engine import (  # the sibling script
    CIFAR_MEAN,
    CIFAR_STD,
    DATA,
    build_model,
    load_images,
    subset_dataset,
    time_sides,
)

from ekdcli.engine import EngineOptions, Runtime, predict
from ekdcli.sdk.energy import energy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="resnet32x4")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--subset", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--precision", default="fp32", help="the scoring pass's (ekd score: fp32 unless set)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    images, labels, classes = load_images(args.data, args.subset, 0)
    dataset = subset_dataset(images, labels, classes)
    runtime = Runtime(EngineOptions(device="auto", precision=args.precision, quiet=True))
    torch.manual_seed(0)
    teacher = runtime.prepare_model(build_model(args.teacher, classes)).eval()
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    normalized = ((dataset.train_images.float() / 255.0 - mean) / std).to(runtime.device)

    def score_pass() -> float:
        started = time.perf_counter()
        logits, _ = predict(teacher, dataset, "train", runtime, batch_size=args.batch_size)
        energy(logits)
        return len(labels) / (time.perf_counter() - started)

    def raw_forward() -> float:
        started = time.perf_counter()
        with torch.no_grad(), runtime.autocast():
            for lo in range(0, len(labels), args.batch_size):
                teacher(normalized[lo : lo + args.batch_size])
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()
        return len(labels) / (time.perf_counter() - started)

    rates = time_sides(
        {"ekd score pass": Side(score_pass), "raw teacher forward": Side(raw_forward)}, 0, args.rounds
    )
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratio = medians["ekd score pass"] / medians["raw teacher forward"]
    print(
        f"{args.teacher}, {len(labels)} images, batch {args.batch_size}, {runtime.precision}, "
        f"{runtime.describe()['device_name']} ({runtime.num_threads} threads)"
    )
    for name, value in medians.items():
        print(f"median {name:<20} {value:8.1f} images/s")
    print(f"ekd score pass / raw forward: {100 * ratio:.1f}%")
    if args.json:
        record = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "images_per_s": rates,
            "median": medians,
        }
        args.json.write_text(json.dumps({**record, "ratio": ratio}, indent=2) + "\n")


class Side:
    """A whole pass timed as one side of :func:`engine.time_sides` (returns images/s)."""

    def __init__(self, run: Callable[[], float]) -> None:
        self.run = run

    def time_steps(self, steps: int) -> tuple[float, float]:
        rate = self.run()
        return 1.0, rate  # (seconds, images): the ratio is the pass's images/s


if __name__ == "__main__":
    main()

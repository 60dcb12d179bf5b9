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
from pathlib import Path

import torch
from engine import CIFAR_MEAN, CIFAR_STD, DATA, build_model, load_images  # the sibling script

from ekdcli.engine import EngineOptions, Runtime, predict
from ekdcli.sdk.contracts import InMemoryDataset
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
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    dataset = InMemoryDataset(
        name="cifar100-subset",
        train_images=x,
        train_labels=torch.from_numpy(labels),
        test_images=x[:64],
        test_labels=torch.from_numpy(labels[:64]),
        class_names=[str(i) for i in range(classes)],
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
    )
    runtime = Runtime(EngineOptions(device="auto", precision=args.precision, quiet=True))
    torch.manual_seed(0)
    teacher = runtime.prepare_model(build_model(args.teacher, classes)).eval()
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    normalized = ((x.float() / 255.0 - mean) / std).to(runtime.device)

    def score_pass() -> float:
        started = time.perf_counter()
        logits, _ = predict(teacher, dataset, "train", runtime, batch_size=args.batch_size)
        energy(logits, 4.0)
        return len(labels) / (time.perf_counter() - started)

    def raw_forward() -> float:
        started = time.perf_counter()
        with torch.no_grad(), runtime.autocast():
            for lo in range(0, len(labels), args.batch_size):
                out = teacher(normalized[lo : lo + args.batch_size])
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()
        del out
        return len(labels) / (time.perf_counter() - started)

    sides = {"ekd score pass": score_pass, "raw teacher forward": raw_forward}
    for side in sides.values():  # warm-up
        side()
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for round_index in range(args.rounds):
        for name, side in sides.items():
            rates[name].append(side())
        print(
            f"round {round_index + 1}/{args.rounds}: "
            + "  ".join(f"{n} {r[-1]:.1f}" for n, r in rates.items())
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


if __name__ == "__main__":
    main()

"""Feature distillers: the engine's training step against an mdistiller-style loop, side by side.

For each feature method (FitNet, AT, PKT, RKD, SP, NST, KDSVD, VID, OFD, CRD, ReviewKD) on one
pair, the reference trains the way mdistiller's trainer does: a DataLoader of PIL images with
RandomCrop(32, 4) + flip + ToTensor + Normalize in workers, fp32, default memory format, the
student and the teacher each called once per step with their features (the teacher in eval
mode under no_grad), the method's loss, backward and an SGD step over the student and the
method's own modules.  The loss is the registered ekd distiller's, bound to the same models, so
both sides compute the same numbers and only the harness differs.  The engine side runs
``StepBench`` with the same distiller (on-device uint8 data, batched crop/flip, its default
precision and channels-last).  Sides alternate within each round; medians are reported as
images/s and as the engine's ratio to the reference.

    python benchmarks/feature_methods.py                        # all eleven, resnet32x4 -> resnet8x4
    python benchmarks/feature_methods.py --methods fitnet,crd --steps 4 --rounds 3
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import (  # noqa: E402  (a sibling benchmark script, not a package)
    DATA,
    ReferenceLoop,
    build_model,
    load_images,
    subset_dataset,
)

from ekdcli.engine import EngineOptions, Recipe, Runtime, StepBench  # noqa: E402
from ekdcli.sdk.contracts import DistillBatch, Distiller, Features, PairContext  # noqa: E402

METHODS = ("fitnet", "at", "pkt", "rkd", "sp", "nst", "kdsvd", "vid", "ofd", "crd", "reviewkd")


def features_of(output: Any) -> tuple[torch.Tensor, Features]:
    logits, found = output
    return logits, Features(found.get("feats", []), found.get("preact_feats", []), found.get("pooled_feat"))


def bound_distiller(method: str, student: nn.Module, teacher: nn.Module, labels: torch.Tensor) -> Distiller:
    """The registered distiller, bound to the pair as ``ekd distill`` binds it."""
    from ekdcli.method.features import bind_distiller
    from ekdcli.sdk.plugins import registry

    options: dict[str, Any] = {}
    if method == "crd":  # the bank holds the benchmark's images only; negatives drawn with replacement
        options["nce_k"] = min(16384, len(labels) - int(torch.bincount(labels).max()))
    distiller = registry("distillers").get(method).build(**options)
    pair = PairContext(student, teacher, "student", "teacher", 100, 3, (32, 32), len(labels), labels)
    bind_distiller(distiller, pair)
    return distiller


class FeatureReference(ReferenceLoop):
    """mdistiller's trainer step for a feature method: one forward of each model with features."""

    def __init__(self, distiller: Distiller, *args: Any) -> None:
        super().__init__(*args)
        self.distiller = distiller
        distiller.to(self.device)
        params = list(self.student.parameters()) + distiller.parameters()
        self.optimizer = torch.optim.SGD(
            params,
            lr=self.optimizer.defaults["lr"],
            momentum=self.optimizer.defaults["momentum"],
            weight_decay=self.optimizer.defaults["weight_decay"],
        )
        self.generator = torch.Generator(device=self.device).manual_seed(0)
        self.epoch = 1

    def time_steps(self, steps: int) -> tuple[float, int]:
        self._sync()
        started = time.perf_counter()
        seen = 0
        for _ in range(steps):
            images, labels, indices = self._next()
            images, labels = images.to(self.device), labels.to(self.device)
            logits, student_features = features_of(self.student(images, return_features=True))
            with torch.no_grad():
                teacher_logits, teacher_features = features_of(self.teacher(images, return_features=True))
            batch = DistillBatch(
                logits, teacher_logits, labels, indices.to(self.device), self.epoch,
                student_features=student_features, teacher_features=teacher_features,
                generator=self.generator,
            )  # fmt: skip
            loss = sum(self.distiller(batch).values())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
            self.optimizer.step()
            seen += images.shape[0]
        self._sync()
        return time.perf_counter() - started, seen


class IndexedImages(torch.utils.data.Dataset):
    """The reference's PIL dataset, also yielding each sample's index (CRD's memory bank needs it)."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image, label = self.base[index]
        return image, label, index


class EngineFeatureSide:
    def __init__(self, distiller: Distiller, student: nn.Module, teacher: nn.Module, dataset: Any,
                 recipe: Recipe, options: EngineOptions) -> None:  # fmt: skip
        from ekdcli.method.objective import DistillObjective

        runtime = Runtime(options)
        objective = DistillObjective(teacher, distiller)
        self.bench = StepBench(student, dataset, objective, recipe, options, runtime=runtime)
        self.precision = runtime.precision

    def time_steps(self, steps: int) -> tuple[float, int]:
        timing = self.bench.time_steps(steps)
        return sum(timing.seconds), timing.images


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="resnet32x4")
    parser.add_argument("--student", default="resnet8x4")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--subset", type=int, default=2048, help="training images to use")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round and side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser.parse_args()


def time_method(args: argparse.Namespace, method: str, setting: dict[str, Any]) -> dict[str, float]:
    """Median images/s of the engine and the reference for one method (rounds alternate the sides)."""
    torch.manual_seed(args.seed)
    teacher = build_model(args.teacher, 100)
    student = build_model(args.student, 100)
    labels = setting["dataset"].train_labels
    sides: dict[str, Any] = {}
    engine_student, engine_teacher = copy.deepcopy(student), copy.deepcopy(teacher)
    sides["engine"] = EngineFeatureSide(
        bound_distiller(method, engine_student, engine_teacher, labels), engine_student, engine_teacher,
        setting["dataset"], setting["recipe"], setting["options"],
    )  # fmt: skip
    reference = FeatureReference(
        bound_distiller(method, student, teacher, labels), student, teacher, setting["images"],
        setting["labels"], setting["recipe"], setting["device"], args.workers, None,
    )  # fmt: skip
    reference.loader = torch.utils.data.DataLoader(
        IndexedImages(reference.loader.dataset), batch_size=args.batch_size, shuffle=True,
        num_workers=args.workers, drop_last=True, persistent_workers=args.workers > 0,
    )  # fmt: skip
    sides["reference"] = reference
    for side in sides.values():  # warm-up: allocation, workers
        side.time_steps(1)
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, side in sides.items():
            seconds, seen = side.time_steps(args.steps)
            rates[name].append(seen / seconds)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratio = medians["engine"] / medians["reference"]
    spread = max(rates["engine"]) / min(rates["engine"])
    print(
        f"{method:<9} engine {medians['engine']:7.1f} img/s  reference {medians['reference']:7.1f} img/s  "
        f"{ratio:5.2f}x  (engine spread {spread:4.2f}x over {args.rounds} rounds)",
        flush=True,
    )
    return {
        **medians,
        "ratio": ratio,
        "engine_rounds": rates["engine"],
        "reference_rounds": rates["reference"],
    }


def main() -> None:
    args = parse_args()
    options = EngineOptions(device=args.device, seed=args.seed, quiet=True)
    runtime = Runtime(options)
    images, labels, classes = load_images(args.data, args.subset, args.seed)
    setting = {
        "images": images,
        "labels": labels,
        "dataset": subset_dataset(images, labels, classes),
        "recipe": Recipe(epochs=1, batch_size=args.batch_size),
        "options": options,
        "device": runtime.device,
    }
    print(
        f"{args.teacher} -> {args.student}, batch {args.batch_size}, {len(labels)} images, "
        f"{runtime.describe()['device_name']} ({runtime.num_threads} threads); engine {runtime.precision} "
        f"channels-last vs reference fp32 with {args.workers} workers; {args.steps} steps x {args.rounds} rounds"
    )
    results = {m: time_method(args, m, setting) for m in args.methods.split(",")}
    slowest = min(results, key=lambda m: results[m]["ratio"])
    print(f"slowest relative to the reference: {slowest} at {results[slowest]['ratio']:.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "device_name": runtime.describe()["device_name"],
            "precision": runtime.precision,
            "threads": runtime.num_threads,
            "results": results,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Engine distillation throughput against a plain mdistiller-style loop, side by side.

The reference trains the way mdistiller / RepDistiller do: a torch Dataset of PIL images with
RandomCrop(32, 4) + RandomHorizontalFlip + ToTensor + Normalize in DataLoader workers, fp32,
default memory format, the teacher in eval mode under no_grad, and the loss written inline
(Hinton KD, or Energy KD as in the authors' release: per-sample temperature 2/4/6 from the
online energy of the teacher's logits against fixed thresholds).  The engine runs the same
pair on the same images through ``StepBench`` with the registered distiller (on-device uint8
data, batched crop/flip, its default precision and channels-last), optionally with the teacher
cache cold (emptied before each round: every view a miss) and warm (every view of the round
filled by an untimed pass over the same batches).  Sides alternate within each round (the
machine's speed drifts) and medians are reported.

    python benchmarks/engine.py --method energy_kd --cache --steps 8 --rounds 5
    python benchmarks/engine.py --teacher resnet56 --student resnet20 --method kd
    python benchmarks/engine.py --teacher resnet8 --student resnet8 --subset 512 --steps 2 --rounds 1
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ekdcli.engine import EngineOptions, Recipe, Runtime, StepBench, predict
from ekdcli.sdk.contracts import EnergyContext, InMemoryDataset
from ekdcli.sdk.energy import compute_thresholds, energy
from ekdcli.sdk.losses import kd_loss

CIFAR_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR_STD = (0.2675, 0.2565, 0.2761)
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar100.npz"
CE_WEIGHT, KD_WEIGHT, TEMPERATURE = 0.1, 0.9, 4.0
# the released Energy KD code: T = 2 for low-energy, 6 for high-energy, 4 otherwise; rates 0.2/0.2
ENERGY_T = (2.0, 4.0, 6.0)
ENERGY_RATE = 0.2


def build_model(name: str, classes: int) -> nn.Module:
    """A CIFAR zoo model from ekd_plugins (resnet8 ... resnet110, resnet8x4, resnet32x4)."""
    module = importlib.import_module("ekd_plugins.models.cifar_resnet")
    return getattr(module, name)(num_classes=classes)


def load_images(path: Path, subset: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``subset`` CIFAR-100 training images (uint8 NHWC) and labels; random data if the file is missing."""
    if path.is_file():
        with np.load(path) as data:
            x, y = data["x_train"][:subset], data["y_train"][:subset].astype(np.int64)
        return x, y, 100
    print(f"({path} not found; using random images)")
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (subset, 32, 32, 3), dtype=np.uint8), rng.integers(0, 100, subset), 100


class PILImages(torch.utils.data.Dataset):
    """What torchvision's CIFAR100 does per sample: a PIL image through the transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Any) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


class ReferenceLoop:
    """The mdistiller-style training step: DataLoader + PIL transforms, fp32, teacher under no_grad."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        images: np.ndarray,
        labels: np.ndarray,
        recipe: Recipe,
        device: torch.device,
        workers: int,
        thresholds: tuple[float, float] | None,
    ) -> None:
        import torchvision.transforms as T

        transform = T.Compose(
            [
                T.RandomCrop(32, padding=4),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(CIFAR_MEAN, CIFAR_STD),
            ]
        )
        self.loader = torch.utils.data.DataLoader(
            PILImages(images, labels, transform),
            batch_size=recipe.batch_size,
            shuffle=True,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            drop_last=True,
            persistent_workers=workers > 0,
        )
        self.device = device
        self.student = student.to(device).train()
        self.teacher = teacher.to(device).eval()
        self.thresholds = thresholds  # None: Hinton KD; else Energy KD with these (low, high)
        self.optimizer = torch.optim.SGD(
            self.student.parameters(),
            lr=recipe.lr,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
        )
        self.batches: Any = iter(())

    def _next(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = next(self.batches, None)
        if batch is None:
            self.batches = iter(self.loader)
            batch = next(self.batches)
        return batch

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _temperature(self, teacher_logits: torch.Tensor) -> torch.Tensor | float:
        if self.thresholds is None:
            return TEMPERATURE
        low, high = self.thresholds
        energies = -TEMPERATURE * torch.logsumexp(teacher_logits / TEMPERATURE, dim=1)
        t_low, t_mid, t_high = ENERGY_T
        temps = torch.full_like(energies, t_mid)
        return temps.masked_fill(energies < low, t_low).masked_fill(energies > high, t_high)

    def time_steps(self, steps: int) -> tuple[float, int]:
        """Seconds and images of ``steps`` steps, data loading included."""
        self._sync()
        started = time.perf_counter()
        images_seen = 0
        for _ in range(steps):
            images, labels = self._next()
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            logits = self.student(images)
            with torch.no_grad():
                teacher_logits = self.teacher(images)
            loss = CE_WEIGHT * F.cross_entropy(logits, labels) + KD_WEIGHT * kd_loss(
                logits, teacher_logits, self._temperature(teacher_logits)
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            images_seen += images.shape[0]
        self._sync()
        return time.perf_counter() - started, images_seen


class EngineSide:
    """The engine with the registered distiller; ``cache`` is off, cold or warm."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        dataset: InMemoryDataset,
        method: str,
        context: EnergyContext | None,
        recipe: Recipe,
        options: EngineOptions,
        cache: str,
        cache_dir: Path,
    ) -> None:
        from ekdcli.method.objective import DistillObjective
        from ekdcli.method.teacher_cache import TeacherCache, build_key
        from ekdcli.sdk.plugins import registry

        runtime = Runtime(options)
        self.mode = cache
        self.cache = None
        if cache != "off":
            key = build_key(dataset, f"benchmark-{id(teacher)}", runtime.precision)
            self.cache = TeacherCache.open(cache_dir / cache, key)
        distiller = registry("distillers").get(method).build()
        objective = DistillObjective(teacher, distiller, None, context, teacher_cache=self.cache)
        self.bench = StepBench(student, dataset, objective, recipe, options, runtime=runtime)
        self.precision = runtime.precision

    def time_steps(self, steps: int) -> tuple[float, int]:
        if self.mode == "cold":
            self.cache.clear()
            self.bench.restart()
        elif self.mode == "warm":
            self.bench.restart()
            self.bench.time_steps(steps)  # untimed: fills the views of the batches replayed below
            self.bench.replay()
        if self.cache is not None:
            self.cache.reset_counts()
        timing = self.bench.time_steps(steps)
        if self.cache is not None:
            expected = {"cold": (0, timing.images), "warm": (timing.images, 0)}[self.mode]
            assert (self.cache.hits, self.cache.misses) == expected, (
                self.mode,
                self.cache.hits,
                self.cache.misses,
            )
        return sum(timing.seconds), timing.images


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="resnet32x4")
    parser.add_argument("--student", default="resnet8x4")
    parser.add_argument("--method", choices=("kd", "energy_kd"), default="kd")
    parser.add_argument(
        "--cache", action="store_true", help="also time the engine with the cache cold and warm"
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--subset", type=int, default=4096, help="training images to use")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round and side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="the engine's (the reference is always fp32)")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--workers", type=int, default=min(8, len(os.sched_getaffinity(0))))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser.parse_args()


def subset_dataset(images: np.ndarray, labels: np.ndarray, classes: int) -> InMemoryDataset:
    """The benchmark's images as an in-memory dataset (64 of them double as the test split)."""
    return InMemoryDataset(
        name="cifar100-subset",
        train_images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        train_labels=torch.from_numpy(labels),
        test_images=torch.from_numpy(images[:64]).permute(0, 3, 1, 2).contiguous(),
        test_labels=torch.from_numpy(labels[:64]),
        class_names=[str(i) for i in range(classes)],
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
    )


def score(
    args: argparse.Namespace, teacher: nn.Module, dataset: InMemoryDataset
) -> tuple[EnergyContext | None, tuple[float, float] | None]:
    """Energy KD's scoring pass over the subset, as ekd score does it (fp32); nothing for KD."""
    if args.method != "energy_kd":
        return None, None
    score_runtime = Runtime(EngineOptions(device=args.device, precision="fp32", quiet=True))
    logits, _ = predict(teacher, dataset, "train", score_runtime)
    energies = energy(logits, TEMPERATURE)
    context = EnergyContext(energies=energies, energy_temperature=TEMPERATURE, fingerprint="benchmark")
    found = compute_thresholds(energies, ENERGY_RATE, ENERGY_RATE)
    return context, (found.low, found.high)


def time_sides(sides: dict[str, Any], steps: int, rounds: int) -> dict[str, list[float]]:
    """Images/s of every side per round, the sides alternating within each round."""
    for side in sides.values():  # warm-up: allocation, kernel selection, worker start
        side.time_steps(2)
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for round_index in range(rounds):
        for name, side in sides.items():
            seconds, seen = side.time_steps(steps)
            rates[name].append(seen / seconds)
        print(f"round {round_index + 1}/{rounds}: " + "  ".join(f"{n} {r[-1]:.1f}" for n, r in rates.items()))
    return rates


def main() -> None:
    args = parse_args()
    options = EngineOptions(
        device=args.device, precision=args.precision, compile=args.compile, seed=args.seed, quiet=True
    )
    runtime = Runtime(options)
    images, labels, classes = load_images(args.data, args.subset, args.seed)
    recipe = Recipe(epochs=1, batch_size=args.batch_size)
    dataset = subset_dataset(images, labels, classes)
    torch.manual_seed(args.seed)
    teacher, student = build_model(args.teacher, classes), build_model(args.student, classes)
    context, thresholds = score(args, teacher, dataset)
    with tempfile.TemporaryDirectory(prefix="ekd-engine-bench-") as scratch:
        sides: dict[str, Any] = {}
        for mode in ["off", "cold", "warm"] if args.cache else ["off"]:
            name = "engine" if mode == "off" else f"engine+cache-{mode}"
            sides[name] = EngineSide(
                copy.deepcopy(student), copy.deepcopy(teacher), dataset, args.method, context, recipe,
                options, mode, Path(scratch),
            )  # fmt: skip
        sides["reference"] = ReferenceLoop(
            copy.deepcopy(student), copy.deepcopy(teacher), images, labels, recipe, runtime.device,
            args.workers, thresholds,
        )  # fmt: skip
        precision = sides["engine"].precision
        print(
            f"{args.method}: {args.teacher} -> {args.student}, batch {args.batch_size}, {len(labels)} images, "
            f"{runtime.describe()['device_name']} ({runtime.num_threads} threads); engine {precision}"
            f"{' compiled' if args.compile else ''} channels-last vs reference fp32 with {args.workers} workers"
        )
        rates = time_sides(sides, args.steps, args.rounds)
    report(args, runtime, precision, rates)


def report(args: argparse.Namespace, runtime: Runtime, precision: str, rates: dict[str, list[float]]) -> None:
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in medians.items():
        print(f"median {name:<20} {value:8.1f} images/s  {value / medians['reference']:5.2f}x reference")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "engine_precision": precision,
            "device_name": runtime.describe()["device_name"],
            "threads": runtime.num_threads,
            "images_per_s": rates,
            "median": medians,
            "vs_reference": {name: value / medians["reference"] for name, value in medians.items()},
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()

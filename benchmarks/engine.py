"""Engine KD training throughput against a plain mdistiller-style loop, side by side.

The reference trains the way mdistiller does: a torch Dataset of PIL images with
RandomCrop(32, 4) + RandomHorizontalFlip + ToTensor + Normalize in DataLoader workers, fp32,
default memory format, the teacher in eval mode under no_grad, and Hinton's KD loss.
The engine runs the same model pair on the same images through ``StepBench`` (on-device
uint8 data, batched crop/flip, autocast, channels-last).  Rounds alternate between the two
(the machine's speed drifts) and medians are reported.

    python benchmarks/engine.py --steps 20 --rounds 5
    python benchmarks/engine.py --teacher resnet8 --student resnet8 --subset 1024 --steps 5
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ekdcli.api import InMemoryDataset
from ekdcli.engine import EngineOptions, Recipe, Runtime, StepBench, StepOutput
from ekdcli.engine.objective import Objective, model_logits
from ekdcli.losses import kd_loss

CIFAR_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR_STD = (0.2675, 0.2565, 0.2761)
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar100.npz"
CE_WEIGHT, KD_WEIGHT, TEMPERATURE = 0.1, 0.9, 4.0


def build_model(name: str, classes: int) -> nn.Module:
    """A CIFAR zoo model from ekd_plugins when installed, else a small stand-in CNN."""
    try:
        module = importlib.import_module("ekd_plugins.models.cifar_resnet")
        return getattr(module, name)(num_classes=classes)
    except (ImportError, AttributeError):
        print(f"(ekd_plugins.models.cifar_resnet:{name} not found; using a small CNN)")
        return nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, classes),
        )


def load_images(path: Path, subset: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``subset`` CIFAR-100 training images (uint8 NHWC) and labels; random data if the file is missing."""
    if path.is_file():
        with np.load(path) as data:
            x, y = data["x_train"][:subset], data["y_train"][:subset].astype(np.int64)
        return x, y, 100
    print(f"({path} not found; using random images)")
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (subset, 32, 32, 3), dtype=np.uint8), rng.integers(0, 100, subset), 100


class KDObjective(Objective):
    """Hinton KD for the engine: frozen teacher, one forward of each model per step."""

    def __init__(self, teacher: nn.Module) -> None:
        self.teacher = teacher

    def setup(self, runtime: Runtime) -> None:
        runtime.prepare_model(self.teacher).eval().requires_grad_(False)

    def __call__(self, model: nn.Module, batch: Any, epoch: int, generator: torch.Generator) -> StepOutput:
        with torch.no_grad():
            teacher_logits = model_logits(self.teacher(batch.images))
        logits = model_logits(model(batch.images))
        return StepOutput(
            losses={
                "loss_ce": CE_WEIGHT * F.cross_entropy(logits.float(), batch.labels),
                "loss_kd": KD_WEIGHT * kd_loss(logits, teacher_logits, TEMPERATURE),
            },
            logits=logits,
        )


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
        self.optimizer = torch.optim.SGD(
            self.student.parameters(),
            lr=recipe.lr,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
        )
        self.batches = iter(())

    def _next(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = next(self.batches, None)
        if batch is None:
            self.batches = iter(self.loader)
            batch = next(self.batches)
        return batch

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

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
                logits, teacher_logits, TEMPERATURE
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            images_seen += images.shape[0]
        self._sync()
        return time.perf_counter() - started, images_seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="resnet32x4")
    parser.add_argument("--student", default="resnet8x4")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--subset", type=int, default=4096, help="training images to use")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round and side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--workers", type=int, default=min(8, len(os.sched_getaffinity(0))))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    options = EngineOptions(
        device=args.device, precision=args.precision, compile=args.compile, seed=args.seed, quiet=True
    )
    runtime = Runtime(options)
    images, labels, classes = load_images(args.data, args.subset, args.seed)
    recipe = Recipe(epochs=1, batch_size=args.batch_size)
    dataset = InMemoryDataset(
        name="cifar100-subset",
        train_images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        train_labels=torch.from_numpy(labels),
        test_images=torch.from_numpy(images[:64]).permute(0, 3, 1, 2).contiguous(),
        test_labels=torch.from_numpy(labels[:64]),
        class_names=[str(i) for i in range(classes)],
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
    )
    torch.manual_seed(args.seed)
    teacher, student = build_model(args.teacher, classes), build_model(args.student, classes)
    ref_teacher, ref_student = build_model(args.teacher, classes), build_model(args.student, classes)
    ref_teacher.load_state_dict(teacher.state_dict())
    ref_student.load_state_dict(student.state_dict())
    engine = StepBench(student, dataset, KDObjective(teacher), recipe, options, runtime=runtime)
    reference = ReferenceLoop(ref_student, ref_teacher, images, labels, recipe, runtime.device, args.workers)
    print(
        f"{args.teacher} -> {args.student}, batch {args.batch_size}, {len(labels)} images, device "
        f"{runtime.describe()['device_name']} ({runtime.num_threads} threads); engine {runtime.precision}"
        f"{' compiled' if args.compile else ''} channels-last vs reference fp32 with {args.workers} workers"
    )
    engine.time_steps(2)  # warm-up: allocation, kernel selection, worker start
    reference.time_steps(2)
    rates: dict[str, list[float]] = {"engine": [], "reference": []}
    for round_index, side in itertools.product(range(args.rounds), ("engine", "reference")):
        if side == "engine":
            timing = engine.time_steps(args.steps)
            seconds, seen = sum(timing.seconds), timing.images
        else:
            seconds, seen = reference.time_steps(args.steps)
        rates[side].append(seen / seconds)
        print(f"round {round_index + 1}/{args.rounds} {side:>9}: {seen / seconds:8.1f} images/s")
    engine_rate, ref_rate = statistics.median(rates["engine"]), statistics.median(rates["reference"])
    print(f"median engine    {engine_rate:8.1f} images/s")
    print(f"median reference {ref_rate:8.1f} images/s")
    print(f"ratio engine / reference: {engine_rate / ref_rate:.2f}x")


if __name__ == "__main__":
    main()

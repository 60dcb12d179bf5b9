"""Small, fast pieces for tests, smoke runs and benchmarks of the engine (no downloads).

:func:`synthetic_dataset` is a learnable in-memory set (one colour per class plus pixel noise),
:class:`TinyNet` a model that learns it in a few steps, and :func:`ddp_worker` the body of a
multi-process test run started with ``torch.multiprocessing.spawn``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ekdcli.sdk.contracts import InMemoryDataset


class TinyNet(nn.Module):
    """conv-BN-ReLU, global average pooling, (dropout), linear."""

    def __init__(self, classes: int = 4, channels: int = 3, width: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(self.drop(x.mean(dim=(2, 3))))


def synthetic_dataset(
    train: int = 256,
    test: int = 64,
    classes: int = 4,
    size: int = 8,
    seed: int = 0,
    padding: int = 2,
    noise: float = 25.0,
) -> InMemoryDataset:
    """Classes differ by colour; crops and flips keep the class, pixel noise makes it non-trivial."""
    gen = torch.Generator().manual_seed(seed)
    colours = torch.randint(30, 226, (classes, 3, 1, 1), generator=gen).float()

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = (torch.arange(n) % classes)[torch.randperm(n, generator=gen)]
        pixels = colours[labels] + torch.randn(n, 3, size, size, generator=gen) * noise
        return pixels.clamp(0, 255).round().to(torch.uint8), labels

    x_train, y_train = make(train)
    x_test, y_test = make(test)
    return InMemoryDataset(
        name="synthetic",
        train_images=x_train,
        train_labels=y_train,
        test_images=x_test,
        test_labels=y_test,
        class_names=[f"class{i}" for i in range(classes)],
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        crop_padding=padding,
    )


def ddp_worker(
    rank: int, world_size: int, init_file: str, run_dir: str, out_dir: str, kwargs: dict[str, Any]
) -> None:
    """One rank of a CPU (gloo) run: join the group, fit, predict, save what the test compares."""
    from ekdcli.engine import ddp
    from ekdcli.engine.loop import fit
    from ekdcli.engine.objective import CrossEntropyObjective
    from ekdcli.engine.options import EngineOptions
    from ekdcli.engine.predict import predict
    from ekdcli.engine.recipe import Recipe
    from ekdcli.engine.runtime import Runtime

    ddp.init(rank, world_size, f"file://{init_file}", backend="gloo")
    try:
        options = EngineOptions(device="cpu", precision="fp32", quiet=True, seed=kwargs.get("seed", 0))
        runtime = Runtime(options)
        model = TinyNet()
        dataset = synthetic_dataset(train=kwargs.get("train", 128), test=kwargs.get("test", 37))
        recipe = Recipe(epochs=kwargs.get("epochs", 2), batch_size=kwargs.get("batch_size", 32), lr=0.1)
        result = fit(model, dataset, CrossEntropyObjective(), recipe, options, Path(run_dir), runtime=runtime)
        logits, labels = predict(model, dataset, "test", runtime, batch_size=8)
        torch.save(
            {"state": result.last_state, "logits": logits, "labels": labels, "top1": result.last_top1},
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        ddp.cleanup()

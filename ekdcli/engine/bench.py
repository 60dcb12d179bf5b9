"""Timing training steps exactly as :func:`~ekdcli.engine.loop.fit` runs them (for ``ekd bench``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ekdcli.engine.loop import Trainer
from ekdcli.engine.objective import Objective
from ekdcli.engine.options import EngineOptions
from ekdcli.engine.pipeline import Batch
from ekdcli.engine.recipe import Recipe
from ekdcli.engine.runtime import Runtime
from ekdcli.sdk.contracts import FolderDataset, InMemoryDataset


@dataclass
class StepTiming:
    """Wall seconds of each timed step (data pipeline included) and the sums of its outputs."""

    seconds: list[float]
    images: int
    losses: dict[str, float] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.images / max(sum(self.seconds), 1e-12)


class StepBench:
    """A model, objective and optimizer set up as in ``fit`` (no files), stepped on demand.

    Each timed step waits for the device to finish, so per-step times are real; batches continue
    through epochs of the training split.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        dataset: InMemoryDataset | FolderDataset,
        objective: Objective,
        recipe: Recipe,
        options: EngineOptions,
        runtime: Runtime | None = None,
    ) -> None:
        recipe.validate()
        options.validate()
        self.runtime = runtime or Runtime(options)
        self.trainer = Trainer(model, dataset, objective, recipe, options, None, self.runtime, {})
        self._batches: Any = iter(())
        self.epoch = 0
        self._epoch_start: torch.Tensor | None = None

    def _next_batch(self) -> Batch:
        batch = next(self._batches, None)
        if batch is None:
            self.restart()
            batch = next(self._batches)
        return batch

    def restart(self) -> None:
        """Start a new epoch now (the rest of the current one is dropped); :meth:`replay` returns here."""
        self.epoch += 1
        self._epoch_start = self.trainer.data_generator.get_state()
        self._batches = self.trainer.train_batches.epoch()

    def replay(self) -> None:
        """Go back to where the last :meth:`restart` began: the same batches (same samples, crops and
        flips) come again.  Benchmarks time a warm teacher cache with it."""
        if self._epoch_start is None:
            self.restart()
            return
        self.trainer.data_generator.set_state(self._epoch_start)
        self._batches = self.trainer.train_batches.epoch()

    def _sync(self) -> None:
        if self.runtime.device.type == "cuda":
            torch.cuda.synchronize(self.runtime.device)

    def time_steps(self, steps: int) -> StepTiming:
        """Run ``steps`` optimizer steps; return their times and summed losses / stats."""
        trainer = self.trainer
        trainer.train_model.train()
        timing = StepTiming(seconds=[], images=0)
        self._sync()
        for _ in range(steps):
            started = time.perf_counter()
            batch = self._next_batch()
            total, out = trainer.step(batch, max(self.epoch, 1))
            self._sync()
            timing.seconds.append(time.perf_counter() - started)
            timing.images += int(batch.labels.shape[0]) * self.runtime.world_size
            for name, value in out.losses.items():
                timing.losses[name] = timing.losses.get(name, 0.0) + float(value.detach())
            for name, stat in out.stats.items():
                timing.stats[name] = timing.stats.get(name, 0.0) + float(stat)
        return timing

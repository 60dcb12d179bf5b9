"""What the training loop optimizes: an Objective turns a model and a batch into loss terms.

The engine calls the objective inside ``runtime.autocast()``, sums the returned losses in
float32 and backpropagates; distillation objectives (teacher, distiller, augmentation) live
with the commands that build them and follow the same protocol.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from ekdcli.engine.pipeline import Batch
    from ekdcli.engine.runtime import Runtime


@dataclass
class StepOutput:
    """Loss terms of one step and numbers to sum over the epoch.

    ``losses``: named scalar tensors (float32); their sum is minimized.  ``stats``: numbers
    (floats or 0-d tensors, kept on the device to avoid syncs) the engine sums over the epoch and
    logs.  ``logits``: the student's logits for the batch rows, in batch order, when available
    (the engine derives training top-1 from them; None skips it).
    """

    losses: dict[str, torch.Tensor]
    stats: dict[str, float | torch.Tensor] = field(default_factory=dict)
    logits: torch.Tensor | None = None


class Objective(ABC):
    """What the loop trains with; subclass it and implement ``__call__``.

    The loop relies on every method below and nothing else: ``setup`` once before training,
    ``parameters`` for the optimizer, ``__call__`` per step, ``state_dict``/``load_state_dict``
    around checkpoints, ``describe`` for the run's summary.
    """

    def setup(self, runtime: Runtime, num_epochs: int) -> None:
        """Called once before training: move frozen parts (a teacher, energies) to the device;
        ``num_epochs`` serves schedules that depend on the run's length."""
        return None

    @abstractmethod
    def __call__(
        self, model: torch.nn.Module, batch: Batch, epoch: int, generator: torch.Generator
    ) -> StepOutput:
        """Forward ``batch`` (``epoch`` is 1-based); ``generator`` is the engine's device RNG
        for any extra randomness (mixing), seeded and checkpointed by the engine."""

    def describe(self) -> dict[str, Any]:
        """What is optimized, stored in the run's summary."""
        return {"objective": type(self).__name__}

    def parameters(self) -> list[torch.Tensor]:
        """Trainable tensors besides the model's (a learned temperature), valid after ``setup``; the
        loop optimizes them with the model's (same optimizer and schedule) and averages their
        gradients over processes."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """Mutable state to checkpoint (tensors, numbers, lists, dicts only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        return None


def model_logits(output: Any) -> torch.Tensor:
    """Logits from a forward output: the tensor itself, or the first item of a (logits, features) pair."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"the model returned {type(output).__name__}; expected logits or (logits, features)")


class CrossEntropyObjective(Objective):
    """Plain supervised training: the model's logits against the labels (teachers, baselines)."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = float(label_smoothing)

    def __call__(
        self, model: torch.nn.Module, batch: Batch, epoch: int, generator: torch.Generator
    ) -> StepOutput:
        logits = model_logits(model(batch.images))
        loss = F.cross_entropy(logits.float(), batch.labels, label_smoothing=self.label_smoothing)
        return StepOutput(losses={"loss_ce": loss}, logits=logits)

    def describe(self) -> dict[str, Any]:
        return {"objective": "cross_entropy", "label_smoothing": self.label_smoothing}

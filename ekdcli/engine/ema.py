"""An exponential moving average (EMA) of a model's weights, as ViT/DeiT students train with.

After every optimizer step, each floating-point tensor of the state (parameters and the batch-norm
statistics) becomes ``decay * average + (1 - decay) * current``; integer buffers (batch-norm step
counters) are copied.  The engine evaluates and stores the average instead of the raw weights.
"""

from __future__ import annotations

import copy

import torch


class WeightAverage:
    """The EMA of ``model``'s weights, started from its weights now; ``model`` holds the average."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        current = model.state_dict()
        for name, average in self.model.state_dict().items():
            value = current[name].detach()
            if average.is_floating_point():
                average.mul_(self.decay).add_(value.to(average.dtype), alpha=1.0 - self.decay)
            else:
                average.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)

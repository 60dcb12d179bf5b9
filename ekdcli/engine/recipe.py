"""Training recipes: optimizer hyper-parameters and the per-step learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ekdcli.util.errors import UsageError

if TYPE_CHECKING:
    import torch

SCHEDULES = ("step", "cosine")
# SGD (the CIFAR recipes) or AdamW (ViT/DeiT students); AdamW ignores momentum and nesterov.
OPTIMIZERS = ("sgd", "adamw")


@dataclass
class Recipe:
    """Optimizer hyper-parameters and LR schedule.

    Milestones are 1-based epochs as in the papers' configs: with ``milestones=(150,)``
    epochs 1..150 train at ``lr`` and epochs 151.. at ``lr * gamma``.
    """

    epochs: int = 240
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "step"
    milestones: tuple[int, ...] = (150, 180, 210)
    gamma: float = 0.1
    warmup_epochs: float = 0
    grad_clip: float | None = None
    eval_every: int = 1
    optimizer: str = "sgd"
    ema: float = 0.0  # decay of the weights' moving average the run evaluates and keeps (0: none)

    def __post_init__(self) -> None:
        self.milestones = tuple(int(m) for m in self.milestones)

    def validate(self) -> Recipe:
        """Raise UsageError on values no training could use; return self for chaining."""
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (
                self.schedule in SCHEDULES,
                f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}",
            ),
            (0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}"),
            (0 <= self.warmup_epochs < self.epochs, "warm-up epochs must be >= 0 and fewer than the epochs"),
            (
                self.grad_clip is None or self.grad_clip > 0,
                f"grad clip must be positive, got {self.grad_clip}",
            ),
            (self.eval_every >= 1, f"eval_every must be at least 1, got {self.eval_every}"),
            (all(m >= 1 for m in self.milestones), f"milestones must be epochs >= 1, got {self.milestones}"),
            (not (self.nesterov and self.momentum == 0), "nesterov needs a momentum above 0"),
            (0 <= self.ema < 1, f"ema (the moving average's decay) must be in [0, 1), got {self.ema}"),
            (
                self.optimizer in OPTIMIZERS,
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(f"{message}; fix the recipe or the matching option.")
        return self

    def with_overrides(self, **changes: Any) -> Recipe:
        """A validated copy with the given fields replaced; ``None`` values leave a field as it is."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None}).validate()


RECIPES: dict[str, Recipe] = {
    # The reference CIFAR-100 recipe of mdistiller / RepDistiller (docs/method.md#training-recipes).
    "cifar": Recipe(),
    # The released Energy KD configs: 360 epochs, lr x0.1 every 30 epochs from 150 to 300.
    "cifar-energy": Recipe(epochs=360, milestones=(150, 180, 210, 240, 270, 300)),
    "imagenet": Recipe(epochs=100, batch_size=512, lr=0.2, weight_decay=1e-4, milestones=(30, 60, 90)),
    # Small in-memory data (the embedded digits, fake): the CIFAR recipe compressed to 30 epochs.
    "quick": Recipe(epochs=30, milestones=(20, 25)),
}


def scale_milestones(recipe: Recipe, epochs: int) -> tuple[int, ...]:
    """The recipe's milestones at the same fractions of a run of ``epochs`` epochs (each at least 1,
    repeats kept so the final rate is the recipe's): 150,180,210 of 240 epochs are 3,4,4 of 5."""
    return tuple(max(1, round(m * epochs / recipe.epochs)) for m in recipe.milestones)


def preset(name: str, lr_hints: Mapping[str, float] | None = None) -> Recipe:
    """The named recipe, at the learning rate the model's hints give for it (else as listed).

    ``lr_hints`` is a model's ``info["recipe_lr"]``: e.g. the model plugin says that MobileNetV2
    and ShuffleNet students train at lr 0.01 under the CIFAR recipes (docs/method.md#training-recipes).
    """
    recipe = RECIPES[name]
    if lr_hints and name in lr_hints:
        return replace(recipe, lr=float(lr_hints[name]))
    return recipe


def lr_factor(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    """Multiplier of ``recipe.lr`` for optimizer step ``step`` (0-based, counted over the whole run).

    Warm-up is linear per step, ``(step + 1) / warmup_steps``, so the last warm-up step reaches
    the full rate.  Step decay counts milestones already passed by the current 0-based epoch
    ``step // steps_per_epoch``.  Cosine decays from 1 to 0 over the steps after warm-up.
    """
    warmup_steps = int(round(recipe.warmup_epochs * steps_per_epoch))
    warm = (step + 1) / warmup_steps if step < warmup_steps else 1.0
    if recipe.schedule == "cosine":
        total = recipe.epochs * steps_per_epoch - warmup_steps
        progress = min(max(step - warmup_steps, 0) / max(total, 1), 1.0)
        return warm * 0.5 * (1.0 + math.cos(math.pi * progress))
    epoch = step // steps_per_epoch
    passed = sum(1 for m in recipe.milestones if epoch >= m)
    return warm * recipe.gamma**passed


def build_optimizer(
    model: torch.nn.Module, recipe: Recipe, extra: Sequence[torch.Tensor] = ()
) -> torch.optim.Optimizer:
    """SGD (or AdamW: ``recipe.optimizer``) over every trainable parameter, weight decay on all of
    them (as mdistiller does).

    ``extra``: trainable tensors outside the model (an objective's, e.g. CTKD's temperature), in
    the same parameter group after the model's (as CTKD's released SGD over student and module).
    """
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise UsageError("the model has no trainable parameters; check the model name or its frozen layers.")
    trainable = params + [p for p in extra if p.requires_grad]
    if recipe.optimizer == "adamw":  # decoupled weight decay, torch's default betas and eps
        return torch.optim.AdamW(trainable, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(
        trainable,
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        nesterov=recipe.nesterov,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step LambdaLR following :func:`lr_factor`; call ``.step()`` after every optimizer step."""
    import torch

    if steps_per_epoch < 1:
        raise UsageError("an epoch has no training steps; use more training samples or a smaller batch size.")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(recipe, step, steps_per_epoch))

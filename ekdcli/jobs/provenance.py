"""Where a stored model comes from, and whether it looks trained enough to teach.

``ekd train`` writes the provenance into the weights' safetensors metadata (data, epochs done, the
recipe by name and as run, test top-1, run directory); this module reads it back for the lines
``ekd score``, ``ekd distill`` and a campaign's plan print, and for their warnings.  Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ekdcli.store.weights import meta_value, read_metadata

# A teacher that trained less than this share of its recipe's epochs is called under-trained.
MIN_RECIPE_SHARE = 0.5
# ... and one whose test top-1 is below this many times chance (1 / classes) is near chance.
CHANCE_FACTOR = 2.0


@dataclass(frozen=True)
class Provenance:
    """What a weights file says about how it was made (None: not recorded)."""

    made_by: str | None
    data: str | None
    epochs: int | None  # epochs trained
    planned: int | None  # the epochs of the recipe as run
    recipe: str | None  # the recipe's name (cifar, quick, ...)
    top1: float | None  # test top-1 of the kept weights, a fraction
    num_classes: int | None
    run_dir: str | None


def _number(metadata: dict[str, str], key: str) -> Any:
    value = meta_value(metadata, key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_provenance(metadata: dict[str, str]) -> Provenance:
    """The provenance in a weights file's metadata (as :func:`ekdcli.store.weights.read_metadata` gives it)."""
    recipe = meta_value(metadata, "recipe")
    planned = recipe.get("epochs") if isinstance(recipe, dict) else None
    name = meta_value(metadata, "recipe_name")
    epochs, classes = _number(metadata, "epochs"), _number(metadata, "num_classes")
    return Provenance(
        made_by=metadata.get("made_by"),
        data=metadata.get("dataset"),
        epochs=int(epochs) if epochs is not None else None,
        planned=int(planned) if isinstance(planned, int) else None,
        recipe=name if isinstance(name, str) else None,
        top1=_number(metadata, "top1"),
        num_classes=int(classes) if classes is not None else None,
        run_dir=metadata.get("run_dir"),
    )


def describe(p: Provenance) -> str:
    """One line: ``ekd train, 240 epochs (recipe cifar) on cifar100, test top-1 75.61%, run ...``."""
    parts = [p.made_by or "made by an unknown tool"]
    if p.epochs is not None:
        of = f" of {p.planned}" if p.planned is not None and p.planned != p.epochs else ""
        parts.append(f"{p.epochs}{of} epochs" + (f" (recipe {p.recipe})" if p.recipe else ""))
    if p.data:
        parts.append(f"on {p.data}")
    if p.top1 is not None:
        parts.append(f"test top-1 {100 * p.top1:.2f}%")
    if p.run_dir:
        parts.append(f"run {p.run_dir}")
    return ", ".join(parts)


def concerns(p: Provenance) -> list[str]:
    """Why a model may be too weak to teach: it trained far fewer epochs than its recipe (the named
    recipe's full length, else the epochs it was started for), or its test top-1 is near chance."""
    from ekdcli.engine.recipe import RECIPES  # the engine package imports torch: not at start-up

    found = []
    expected = RECIPES[p.recipe].epochs if p.recipe in RECIPES else p.planned
    if p.epochs is not None and expected and p.epochs < MIN_RECIPE_SHARE * expected:
        recipe = f"the {p.recipe} recipe's" if p.recipe in RECIPES else "its planned"
        found.append(f"it trained {p.epochs} of {recipe} {expected} epochs")
    if p.top1 is not None and p.num_classes and p.top1 < CHANCE_FACTOR / p.num_classes:
        found.append(
            f"its test top-1 {100 * p.top1:.2f}% is near chance ({100 / p.num_classes:.2f}% for "
            f"{p.num_classes} classes)"
        )
    return found


def teacher_report(path: Path | str, metadata: dict[str, str] | None = None) -> tuple[str, str | None]:
    """The teacher's provenance line and, for a teacher that looks untrained, one warning sentence."""
    provenance = read_provenance(metadata if metadata is not None else read_metadata(path))
    found = concerns(provenance)
    warning = None
    if found:
        warning = (
            f"the teacher {path} looks untrained: {'; '.join(found)}. Its scores and distillation results are "
            "not comparable to the paper's; train it fully (e.g. 'ekd train MODEL' without --epochs)."
        )
    return f"{path} ({describe(provenance)})", warning


def say_teacher(say: Any, path: Path | str, metadata: dict[str, str]) -> None:
    """``  teacher: PATH (provenance)`` on ``say`` (a Console), and its warning if it looks untrained:
    beside the plan it concerns (stdout), so that a refusal after it stays one sentence on stderr."""
    line, warning = teacher_report(path, metadata)
    say.say(f"  teacher: {line}")
    if warning is not None:
        say.say(f"  WARNING: {warning}")

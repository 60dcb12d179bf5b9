"""ReviewKD's settings for one teacher/student pair: given options, else mdistiller's per-pair
values, else its defaults; shapes and channels derived from the models.

mdistiller hand-writes ``SHAPES``/``OUT_SHAPES``/``IN_CHANNELS``/``OUT_CHANNELS`` for
resnet32x4 -> resnet8x4 (its cfg defaults) and its ImageNet pairs; here they follow from one
probe of both models, deepest level first: the pooled feature (size 1), then the teacher's stages after
its stem and as many of the student's last stages.  Given values must agree with the models (anything else cannot run).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ekd_plugins.distillers.feature.options_modules import (
    REVIEWKD_DEFAULTS,
    REVIEWKD_LAYOUT,
    ReviewKDOptions,
)
from ekdcli.sdk.contracts import Features
from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.options import as_bool, as_float, as_int, owner, read_options

WHO = owner("distiller", "reviewkd")


@dataclass(frozen=True)
class ReviewLayout:
    shapes: list[int]
    out_shapes: list[int]
    in_channels: list[int]
    out_channels: list[int]
    max_mid_channel: int
    stu_preact: bool
    warmup: float
    w_feat: float

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def as_int_list(name: str, value: Any) -> list[int]:
    """A list of positive integers from a list or a ``"1,8,16,32"`` / ``"[1, 8, 16, 32]"`` string."""
    items = value.strip().strip("[]").split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise UsageError(f"option {name!r} of {WHO} must be a list of integers, got {value!r}.")
    return [as_int(WHO, name, item, minimum=1) for item in items]


def student_levels(feats: list[Any], teacher_levels: int) -> list[Any]:
    """The student's stage tensors paired with the teacher's ``preact_feats[1:]``: its last ones
    (mdistiller reverses the student's list and zips it with the ABFs, so a stem entry, where the
    student has one, falls off; ImageNet MobileNetV1 has none)."""
    return feats[len(feats) - teacher_levels :] if len(feats) >= teacher_levels else []


def models_layout(student: Features, teacher: Features) -> dict[str, list[int]]:
    """Shapes and channels of the levels, deepest first, from one probe of each model."""
    t_stages = teacher.preact_feats[1:]
    s_stages = student_levels(student.feats, len(t_stages))
    if not s_stages:
        raise UsageError(
            f"{WHO} pairs the teacher's {len(t_stages)} stages with the student's, but the student has only "
            f"{len(student.feats)}; choose models with as many stages."
        )
    s_pooled, t_pooled = int(student.pooled()[0].numel()), int(teacher.pooled()[0].numel())
    return {
        "shapes": [1, *(int(f.shape[-1]) for f in s_stages[::-1])],
        "out_shapes": [1, *(int(f.shape[-1]) for f in t_stages[::-1])],
        "in_channels": [*(int(f.shape[1]) for f in s_stages), s_pooled],
        "out_channels": [*(int(f.shape[1]) for f in t_stages), t_pooled],
    }


def _checked_layout(derived: dict[str, list[int]], options: dict[str, Any]) -> dict[str, list[int]]:
    for name in REVIEWKD_LAYOUT:
        if options.get(name) is None:
            continue
        given = as_int_list(name, options[name])
        if given != derived[name]:
            raise UsageError(
                f"option {name!r} of {WHO} is {given} but the teacher and student give {derived[name]}; "
                "leave it out to derive it from the models."
            )
    return derived


def derive_layout(
    student: Features, teacher: Features, options: dict[str, Any], known: dict[str, Any]
) -> ReviewLayout:
    """The layout of this pair: ``options`` (given) over ``known`` (mdistiller's pair values) over defaults."""

    def value(name: str) -> Any:
        for source in (options, known, REVIEWKD_DEFAULTS):
            if source.get(name) is not None:
                return source[name]
        return None

    layout = _checked_layout(models_layout(student, teacher), options)
    return ReviewLayout(
        **layout,
        max_mid_channel=as_int(WHO, "max_mid_channel", value("max_mid_channel"), minimum=1),
        stu_preact=as_bool(WHO, "stu_preact", value("stu_preact")),
        warmup=as_float(WHO, "warmup", value("warmup"), positive=True),
        w_feat=as_float(WHO, "w_feat", value("w_feat"), non_negative=True),
    )


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Every option, read as its record says; unknown names and malformed values are refused before any
    work (the layout's agreement with the pair is checked in bind())."""
    opts = read_options(WHO, ReviewKDOptions, options)
    for name in REVIEWKD_LAYOUT:
        if opts[name] is not None:
            as_int_list(name, opts[name])
    return opts

"""What the feature distillers share: the base class, the shape probe and
FitNet's convolutional regressor (mdistiller's ``ConvReg``, same attribute names)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ekd_plugins.distillers.logit import cross_entropy
from ekdcli.sdk.contracts import DistillBatch, FeatureDistiller, Features, PairContext
from ekdcli.sdk.errors import JobError, UsageError
from ekdcli.sdk.losses import upcast

Shape = tuple[int, ...]


def upcast_features(features: Features) -> Features:
    """The same features in float32 at least (bf16 under autocast; float64 stays float64); a kind the
    method does not read may be absent (an empty list, a None pooled feature)."""
    pooled = features.pooled_feat
    return Features(
        [upcast(f) for f in features.feats],
        [upcast(f) for f in features.preact_feats],
        upcast(pooled) if pooled is not None else pooled,
    )


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Autocast off: the engine calls distillers under autocast, which would run the losses' matrix
    products (similarity and distance matrices, SVD alignment) in bf16 again after the upcast."""
    if device.type in ("cpu", "cuda"):
        with torch.autocast(device.type, enabled=False):
            yield
    else:
        yield


def same_height(f_s: torch.Tensor, f_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The higher of two maps average-pooled to the other's height (square output, as mdistiller)."""
    s_h, t_h = f_s.shape[2], f_t.shape[2]
    if s_h > t_h:
        return F.adaptive_avg_pool2d(f_s, (t_h, t_h)), f_t
    if s_h < t_h:
        return f_s, F.adaptive_avg_pool2d(f_t, (s_h, s_h))
    return f_s, f_t


class FeatureLossDistiller(FeatureDistiller):
    """``loss_ce = w_ce * CE(student logits)`` and ``loss_feat = w_feat * feature_loss(student, teacher)``.

    Subclasses set ``name`` and ``features`` and implement :meth:`feature_loss` on float32 (or
    float64) features; the extra ``settings`` are their own options, for :meth:`describe`.
    """

    features: tuple[str, ...] = ("feats",)

    def __init__(self, w_ce: float, w_feat: float, **settings: Any) -> None:
        self.w_ce, self.w_feat, self.settings = w_ce, w_feat, settings

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "w_ce": self.w_ce, "w_feat": self.w_feat, **self.settings}

    def bind(self, pair: PairContext) -> None:
        if pair.teacher is None:
            raise UsageError(f"distiller {self.name!r} needs a teacher; give one with --teacher.")

    def feature_loss(self, student: Features, teacher: Features) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        if batch.student_features is None or batch.teacher_features is None:
            raise JobError(
                f"distiller {self.name!r} got no intermediate features; the models must return them."
            )
        student, teacher = upcast_features(batch.student_features), upcast_features(batch.teacher_features)
        with full_precision(batch.student_logits.device):
            loss_feat = self.w_feat * self.feature_loss(student, teacher)
        return {"loss_ce": self.w_ce * cross_entropy(batch), "loss_feat": loss_feat}


# ------------------------------------------------------------------ shapes
def _feats_of(output: Any) -> Any:
    """The features of ``model(x, return_features=True)``: a dict (the zoo's) or :class:`Features`."""
    features = output[1]
    return features if isinstance(features, Mapping) else vars(features)


def probe_feature_shapes(pair: PairContext) -> tuple[list[Shape], list[Shape]]:
    """Shapes of the student's and the teacher's ``feats`` for one image of the dataset's size.

    Unlike mdistiller's ``get_feat_shapes`` (a forward in train mode, which moves the batch-norm
    running statistics of both models), both models run in eval mode without gradients and get
    their modes back afterwards: the probe leaves no trace.
    """
    if pair.teacher is None:
        raise UsageError("a feature distiller needs a teacher; give one with --teacher.")
    models = (pair.student, pair.teacher)
    modes = [m.training for m in models]
    image = torch.zeros(1, pair.in_channels, *pair.image_size)
    try:
        shapes = []
        for model in models:
            model.eval()
            with torch.no_grad():
                shapes.append(
                    [tuple(f.shape) for f in _feats_of(model(image, return_features=True))["feats"]]
                )
    finally:
        for model, mode in zip(models, modes, strict=True):
            model.train(mode)
    return shapes[0], shapes[1]


# ---------------------------------------------------------------- regressor
def regressor_conv(student: Shape, teacher: Shape) -> nn.Module | None:
    """The convolution that maps a student map ``[N, C, H, W]`` onto the teacher's size (mdistiller's
    rule): stride 2 for twice the height, a transposed convolution for half, else a valid convolution
    whose kernel absorbs the difference; None when no rule applies."""
    (s_c, s_h, s_w), (t_c, t_h, t_w) = student[1:], teacher[1:]
    if s_h == 2 * t_h:
        return nn.Conv2d(s_c, t_c, kernel_size=3, stride=2, padding=1)
    if 2 * s_h == t_h:
        return nn.ConvTranspose2d(s_c, t_c, kernel_size=4, stride=2, padding=1)
    if s_h >= t_h and s_w >= t_w:
        return nn.Conv2d(s_c, t_c, kernel_size=(1 + s_h - t_h, 1 + s_w - t_w))
    return None


class ConvRegressor(nn.Module):
    """``relu(bn(conv(x)))``: a student feature map regressed onto the teacher's shape."""

    def __init__(self, student: Shape, teacher: Shape, use_relu: bool = True) -> None:
        super().__init__()
        conv = regressor_conv(student, teacher)
        if conv is None:
            raise ValueError(
                f"no regressor maps a student map of {student[2:]} onto a teacher map of {teacher[2:]}"
            )
        self.use_relu = use_relu
        self.conv = conv
        self.bn = nn.BatchNorm2d(teacher[1])
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.conv(x))
        return self.relu(out) if self.use_relu else out

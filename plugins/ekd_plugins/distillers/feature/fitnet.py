"""FitNet (Romero et al., ICLR 2015) as mdistiller runs it: a regressor maps the student's hint
feature ``feats[hint_layer]`` onto the teacher's, and the loss is their mean squared error."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ekd_plugins.distillers.feature._common import (
    ConvRegressor,
    FeatureLossDistiller,
    probe_feature_shapes,
    regressor_conv,
)
from ekd_plugins.distillers.feature.options_basic import FitNetOptions
from ekdcli.sdk.contracts import Features, PairContext
from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.losses import upcast
from ekdcli.sdk.options import owner, read_options


class FitNetModules(nn.Module):
    """FitNet's trainable state: ``conv_reg``, named as mdistiller's distiller attribute."""

    def __init__(self, conv_reg: ConvRegressor) -> None:
        super().__init__()
        self.conv_reg = conv_reg


class FitNetDistiller(FeatureLossDistiller):
    """``w_ce * CE + w_feat * MSE(conv_reg(f_s[h]), f_t[h])``; ``conv_reg`` is trained with the student."""

    name = "fitnet"

    def __init__(self, w_ce: float, w_feat: float, hint_layer: int) -> None:
        super().__init__(w_ce, w_feat, hint_layer=hint_layer)
        self.hint_layer = hint_layer

    def bind(self, pair: PairContext) -> None:
        super().bind(pair)
        student, teacher = probe_feature_shapes(pair)
        layer = self.hint_layer
        if layer >= min(len(student), len(teacher)):
            raise UsageError(
                f"option 'hint_layer' of distiller 'fitnet' is {layer}, but {pair.student_name} and "
                f"{pair.teacher_name} have {min(len(student), len(teacher))} feature maps; choose a smaller one."
            )
        if regressor_conv(student[layer], teacher[layer]) is None:
            raise UsageError(
                f"fitnet cannot regress {pair.student_name}'s hint map of size {student[layer][2:]} onto "
                f"{pair.teacher_name}'s of size {teacher[layer][2:]}; choose another 'hint_layer'."
            )
        self.modules = FitNetModules(ConvRegressor(student[layer], teacher[layer]))

    def feature_loss(self, student: Features, teacher: Features) -> torch.Tensor:
        assert isinstance(self.modules, FitNetModules), "bind() builds the regressor"
        # In float32 like the rest of the loss (autocast is off here; see full_precision).
        regressed = upcast(self.modules.conv_reg(student.feats[self.hint_layer]))
        return F.mse_loss(regressed, teacher.feats[self.hint_layer])


def make_fitnet(**options: Any) -> FitNetDistiller:
    opts = read_options(owner("distiller", "fitnet"), FitNetOptions, options)
    return FitNetDistiller(opts["w_ce"], opts["w_feat"], opts["hint_layer"])

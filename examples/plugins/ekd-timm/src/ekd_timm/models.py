"""Building timm models with ekd's forward contract.

ekd calls ``model(x)`` for logits and ``model(x, return_features=True)`` for
``(logits, {"feats": [...], "preact_feats": [], "pooled_feat": ...})``: ``feats`` are timm's
``forward_intermediates`` (one per entry of ``feature_info``: the stages of a CNN, the blocks of a
ViT), ``pooled_feat`` is ``forward_head(..., pre_logits=True)``; timm has no pre-ReLU tensors, so
``preact_feats`` is empty.  ``get_stage_channels()`` gives the channels of ``feats``.  Rather than wrapping the timm model
in another module (which would prefix every parameter name with ``model.`` and
break loading timm state dicts with ``ekd import``), the built model's class is
swapped for a subclass that only adds the ``return_features`` argument: same
parameters, same names, same ``isinstance``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ekdcli.sdk.errors import PluginError, UsageError

_ADAPTED: dict[type[nn.Module], type[nn.Module]] = {}


def _adapted_class(base: type[nn.Module]) -> type[nn.Module]:
    """``base`` with ``forward(x, return_features=False)``; one subclass per timm class."""
    known = _ADAPTED.get(base)
    if known is not None:
        return known

    def forward(self: Any, x: torch.Tensor, return_features: bool = False) -> Any:
        if not return_features:
            return base.forward(self, x)
        return _with_features(self, x)

    def get_stage_channels(self: Any) -> list[int]:
        return [int(stage["num_chs"]) for stage in self.feature_info]

    members = {"forward": forward, "get_stage_channels": get_stage_channels, "__module__": base.__module__}
    cls: type[nn.Module] = type(base.__name__, (base,), members)
    _ADAPTED[base] = cls
    return cls


def _with_features(model: Any, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
    if not hasattr(model, "forward_intermediates"):
        raise PluginError(
            f"this timm version cannot give the intermediate features of {type(model).__name__} "
            "(no forward_intermediates); upgrade it with 'pip install -U timm'."
        )
    final, feats = model.forward_intermediates(x)
    # forward_head(final) is exactly what the model's forward computes after its features;
    # pre_logits=True stops before the classifier: the pooled (and, per model, normed) vector.
    logits = model.forward_head(final)
    pooled = model.forward_head(final, pre_logits=True)
    return logits, {"feats": list(feats), "preact_feats": [], "pooled_feat": pooled}


def adapt(model: nn.Module) -> nn.Module:
    """Give a timm model ekd's forward contract, in place (parameters and their names unchanged)."""
    model.__class__ = _adapted_class(type(model))
    return model


def create(timm_name: str, num_classes: int, in_channels: int = 3, **options: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=..., in_chans=..., **options)``, adapted."""
    if options.pop("pretrained", False):
        raise UsageError(
            "ekd-timm never downloads pretrained weights; train the model with 'ekd train' "
            "or bring its weights with 'ekd import'."
        )
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise UsageError(f"timm/{timm_name} needs a positive number of classes, got {num_classes!r}.")
    if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels < 1:
        raise UsageError(f"timm/{timm_name} needs a positive number of input channels, got {in_channels!r}.")
    try:
        import timm
    except ImportError as exc:
        raise PluginError(
            f"timm/{timm_name} needs the timm package, which is not importable ({exc}); "
            "install it with 'pip install timm'."
        ) from exc
    model = timm.create_model(
        timm_name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **options
    )
    return adapt(model)

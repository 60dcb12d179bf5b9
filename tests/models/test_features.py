"""The zoo's features and hooks against mdistiller's models (tests/models/data/README.md).

Every model is built from seeded weights (batch norms with random statistics, so that a BN in the
wrong place shows), runs a seeded float64 input in eval and in train mode, and each tensor of
``forward(x, return_features=True)`` must have the shape and the statistics that mdistiller's model
gave with the same weights, to 1e-10.  ``get_bn_before_relu()`` must name the modules mdistiller's
names, ``get_stage_channels()`` must give its values.  The helpers here also made the reference.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import ekd_plugins.models as zoo
import pytest
import torch
from torch import nn

DATA = Path(__file__).parent / "data" / "mdistiller_features.json"
TABLE = {name: (factory, info) for name, factory, _aliases, _text, info in zoo.model_table()}
BIG = {
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet32x4",
    "resnet110",
    "vgg16",
    "vgg19",
    "imagenet/resnet50",
    "imagenet/mobilenetv1",
}  # over ~1 s each on a laptop core: marked slow
# mdistiller says 256/512/1024/2048 for every ResNet; those are ResNet50's widths (feats[1:]).
# ResNet18/34's stages have 64/128/256/512 channels, which is what a connector needs.
STAGE_CHANNELS_FIXED = {
    "resnet18": [64, 128, 256, 512],
    "resnet34": [64, 128, 256, 512],
    "imagenet/resnet18": [64, 128, 256, 512],
    "imagenet/resnet34": [64, 128, 256, 512],
}


def num_classes(name: str) -> int:
    return 1000 if name.startswith("imagenet/") else 100


def input_size(name: str) -> int:
    return 64 if name.startswith("imagenet/") else 32


def build_seeded(name: str) -> nn.Module:
    """ekd's model from fixed seeded weights, batch norms with random affine and running stats, float64."""
    module, attr = TABLE[name][0].split(":")
    torch.manual_seed(0)
    model = getattr(importlib.import_module(module), attr)(num_classes=num_classes(name))
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=generator))
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=generator))
                m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=generator))
    return model.double()


def seeded_input(name: str) -> torch.Tensor:
    size = input_size(name)
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def stats(t: torch.Tensor) -> dict[str, Any]:
    """Shape, sum, sum of squares and the values at 8 evenly spaced flat positions (float64)."""
    flat = t.detach().double().reshape(-1)
    positions = [(flat.numel() - 1) * k // 7 for k in range(8)]
    return {
        "shape": list(t.shape),
        "sum": float(flat.sum()),
        "sumsq": float(flat.square().sum()),
        "values": [float(flat[p]) for p in positions],
    }


def run_modes(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """``{"eval": ..., "train": ...}``: the statistics of the logits and of every feature tensor."""
    out = {}
    for mode in ("eval", "train"):
        model.train(mode == "train")
        with torch.no_grad():
            logits, features = model(x, return_features=True)
        out[mode] = {
            "logits": stats(logits),
            "feats": [stats(f) for f in features["feats"]],
            "preact_feats": [stats(f) for f in features.get("preact_feats", [])],
            "pooled_feat": stats(features["pooled_feat"]),
        }
    return out


def bn_names(model: nn.Module) -> list[str] | None:
    if not hasattr(model, "get_bn_before_relu"):
        return None
    names = {id(m): n for n, m in model.named_modules()}
    return [names[id(bn)] for bn in model.get_bn_before_relu()]


def _reference() -> dict[str, Any]:
    return json.loads(DATA.read_text())["models"] if DATA.exists() else {}


REFERENCE = _reference()


def _close(ours: dict[str, Any], theirs: dict[str, Any], where: str) -> None:
    assert ours["shape"] == theirs["shape"], f"{where}: shape {ours['shape']} != {theirs['shape']}"
    for key in ("sum", "sumsq"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-10, abs=1e-10), f"{where}: {key}"
    assert ours["values"] == pytest.approx(theirs["values"], rel=1e-10, abs=1e-10), f"{where}: values"


def _params(names: list[str]) -> list[Any]:
    return [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in names]


def test_reference_covers_the_zoo():
    # every zoo model with an mdistiller counterpart has numbers; the others are listed here
    assert set(TABLE) - set(REFERENCE) == {"imagenet/mobilenet_v2", "tiny_cnn"}


@pytest.mark.parametrize("name", _params(sorted(REFERENCE)))
def test_features_equal_mdistillers(name):
    model = build_seeded(name)
    ours = run_modes(model, seeded_input(name))
    theirs = REFERENCE[name]
    for mode in ("eval", "train"):
        _close(ours[mode]["logits"], theirs[mode]["logits"], f"{mode} logits")
        _close(ours[mode]["pooled_feat"], theirs[mode]["pooled_feat"], f"{mode} pooled_feat")
        for kind in ("feats", "preact_feats"):
            assert len(ours[mode][kind]) == len(theirs[mode][kind]), f"{mode} {kind}: count"
            for i, (a, b) in enumerate(zip(ours[mode][kind], theirs[mode][kind], strict=True)):
                _close(a, b, f"{mode} {kind}[{i}]")


@pytest.mark.parametrize("name", _params(sorted(REFERENCE)))
def test_hooks_equal_mdistillers(name):
    model = build_seeded(name)
    theirs = REFERENCE[name]
    assert bn_names(model) == theirs["bn_before_relu"]
    if hasattr(model, "get_bn_before_relu"):
        assert all(type(bn) is nn.BatchNorm2d for bn in model.get_bn_before_relu())
    expected = STAGE_CHANNELS_FIXED.get(name, theirs["stage_channels"])
    if expected is None:  # mdistiller has none (ShuffleV1): ours is checked against the features below
        assert hasattr(model, "get_stage_channels")
    else:
        assert model.get_stage_channels() == expected


@pytest.mark.parametrize("name", _params(sorted(TABLE)))
def test_info_says_what_the_model_gives(name):
    info = TABLE[name][1]
    model = build_seeded(name).eval()
    with torch.no_grad():
        plain = model(seeded_input(name))
        logits, features = model(seeded_input(name), return_features=True)
    assert isinstance(plain, torch.Tensor) and torch.equal(plain, logits)
    assert set(features) == {"feats", "preact_feats", "pooled_feat"}
    assert set(info["features"]) == {k for k in features if k == "pooled_feat" or features[k]}
    assert set(info["model_hooks"]) == {
        hook for hook in ("bn_before_relu", "stage_channels") if hasattr(model, f"get_{hook}")
    }
    feats, preacts = features["feats"], features["preact_feats"]
    if "stage_channels" in info["model_hooks"]:  # the channels of the last len(...) feats
        channels = model.get_stage_channels()
        assert channels == [f.shape[1] for f in feats[len(feats) - len(channels) :]]
    if preacts:
        assert [p.shape for p in preacts] == [f.shape for f in feats]
    if "bn_before_relu" in info["model_hooks"] and preacts:  # each BN makes one of the last preacts
        bns = model.get_bn_before_relu()
        assert [bn.num_features for bn in bns] == [p.shape[1] for p in preacts[len(preacts) - len(bns) :]]


def test_tiny_cnn_features_by_hand():
    model = build_seeded("tiny_cnn").eval()
    x = seeded_input("tiny_cnn")
    with torch.no_grad():
        logits, features = model(x, return_features=True)
        f1 = torch.relu(model.bn1(model.conv1(x)))
        pre2 = model.bn2(model.conv2(f1))
    torch.testing.assert_close(features["feats"], [f1, torch.relu(pre2)], rtol=0, atol=0)
    torch.testing.assert_close(features["preact_feats"], [f1, pre2], rtol=0, atol=0)
    torch.testing.assert_close(features["pooled_feat"], torch.relu(pre2).mean(dim=(2, 3)))
    torch.testing.assert_close(model.fc(features["pooled_feat"]), logits)
    assert model.get_bn_before_relu() == [model.bn2] and model.get_stage_channels() == [8, 16]

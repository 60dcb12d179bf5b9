"""The model zoo: mdistiller-compatible names and shapes, parameter counts, the forward contract."""

from __future__ import annotations

import functools
import importlib
import math
import subprocess
import sys
from typing import Any

import ekd_plugins.models as zoo
import pytest
import torch
import torchvision
from torch import nn

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _registered() -> dict[str, dict[str, Any]]:
    calls: dict[str, dict[str, Any]] = {}

    def fake_register(
        name: str, factory: Any, *, aliases: tuple[str, ...] = (), description: str = "", info=None
    ):
        assert name not in calls, f"{name} registered twice"
        calls[name] = {
            "factory": factory,
            "aliases": tuple(aliases),
            "description": description,
            "info": info,
        }

    zoo.register_models(fake_register)
    return calls


REGISTERED = _registered()


def _resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def build(name: str, **kwargs: Any) -> nn.Module:
    return _resolve(REGISTERED[name]["factory"])(**kwargs)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@functools.cache
def count_at_100(name: str) -> int:
    """Parameter count at 100 classes and 3 channels (cached: building the big models takes a while)."""
    return count(build(name, num_classes=100, in_channels=3))


# ------------------------------------------------------------------ registration
CANONICAL = [
    *[f"resnet{d}" for d in (8, 14, 20, 32, 44, 56, 110)],
    "resnet8x4",
    "resnet32x4",
    "wrn_16_1",
    "wrn_16_2",
    "wrn_40_1",
    "wrn_40_2",
    "vgg8",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "mobilenetv2",
    "shufflev1",
    "shufflev2",
    "resnet18",
    "resnet34",
    "resnet50",
    "imagenet/resnet18",
    "imagenet/resnet34",
    "imagenet/resnet50",
    "imagenet/mobilenet_v2",
    "imagenet/mobilenetv1",
    "tiny_cnn",
]


def test_every_canonical_name_is_registered_with_a_lazy_factory_string():
    assert sorted(REGISTERED) == sorted(CANONICAL)
    for name, entry in REGISTERED.items():
        assert isinstance(entry["factory"], str) and entry["factory"].startswith("ekd_plugins.models."), name
        assert callable(_resolve(entry["factory"])), name
        assert entry["description"] and "\n" not in entry["description"], name
        info = entry["info"]
        assert info["family"] == (
            "imagenet" if name.startswith("imagenet/") else "generic" if name == "tiny_cnn" else "cifar"
        )
        assert info["input"] == {"cifar": "32x32", "imagenet": "224x224", "generic": "any"}[info["family"]]


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("wrn40_2", "wrn_40_2"),
        ("wrn-40-2", "wrn_40_2"),
        ("wrn16_2", "wrn_16_2"),
        ("mv2", "mobilenetv2"),
        ("mobile_half", "mobilenetv2"),
        ("sv1", "shufflev1"),
        ("shufflenetv1", "shufflev1"),
        ("sv2", "shufflev2"),
        ("res32x4", "resnet32x4"),
        ("res8x4", "resnet8x4"),
        ("vgg13_bn", "vgg13"),
        ("resnet18_imagenet", "imagenet/resnet18"),
        ("mobilenetv1", "imagenet/mobilenetv1"),
    ],
)
def test_aliases_point_to_their_model(alias, canonical):
    assert alias in REGISTERED[canonical]["aliases"]


def test_no_label_is_used_twice_even_ignoring_case():
    labels = [label.lower() for name, e in REGISTERED.items() for label in (name, *e["aliases"])]
    duplicates = {label for label in labels if labels.count(label) > 1}
    assert not duplicates


def test_importing_the_plugin_does_not_import_torch():
    code = "import sys, ekd_plugins.models; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------- parameter counts
# Published sizes at 100 classes (mdistiller / CRD tables), in millions.
PUBLISHED_M = {
    "resnet8": 0.084,
    "resnet20": 0.278,
    "resnet56": 0.862,
    "resnet110": 1.737,
    "resnet8x4": 1.234,
    "resnet32x4": 7.434,
    "wrn_16_2": 0.703,
    "wrn_40_2": 2.255,
    "vgg8": 3.965,
    "vgg13": 9.462,
    "mobilenetv2": 0.813,
    "shufflev1": 0.949,
    "shufflev2": 1.356,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_M))
def test_parameter_count_matches_the_published_size(name):
    assert abs(count_at_100(name) / 1e6 - PUBLISHED_M[name]) <= 0.001 + 1e-9


@pytest.mark.parametrize("name", CANONICAL)
def test_static_info_equals_the_built_model(name):
    assert REGISTERED[name]["info"]["params_100"] == count_at_100(name)


# ------------------------------------------------------------ names and shapes
def _bn(prefix: str) -> list[str]:
    return [f"{prefix}.{s}" for s in BN]


def _cifar_resnet_keys(blocks: int, widths: list[int]) -> list[str]:
    """Keys of mdistiller's models/cifar/resnet.py ResNet, written out independently."""
    keys = ["conv1.weight", *_bn("bn1")]
    inplanes = widths[0]
    for stage in (1, 2, 3):
        planes = widths[stage]
        for i in range(blocks):
            p = f"layer{stage}.{i}"
            keys += [f"{p}.conv1.weight", *_bn(f"{p}.bn1"), f"{p}.conv2.weight", *_bn(f"{p}.bn2")]
            if i == 0 and (stage > 1 or inplanes != planes):
                keys += [f"{p}.downsample.0.weight", *_bn(f"{p}.downsample.1")]
        inplanes = planes
    return [*keys, "fc.weight", "fc.bias"]


def test_resnet20_has_mdistiller_names_and_shapes():
    sd = build("resnet20", num_classes=100).state_dict()
    assert list(sd) == _cifar_resnet_keys(3, [16, 16, 32, 64])
    assert sd["conv1.weight"].shape == (16, 3, 3, 3)
    assert sd["layer2.0.conv1.weight"].shape == (32, 16, 3, 3)
    assert sd["layer3.0.downsample.0.weight"].shape == (64, 32, 1, 1)
    assert sd["fc.weight"].shape == (100, 64)


def test_resnet8x4_has_mdistiller_names_and_shapes():
    sd = build("resnet8x4", num_classes=100).state_dict()
    assert list(sd) == _cifar_resnet_keys(1, [32, 64, 128, 256])
    assert sd["layer1.0.downsample.0.weight"].shape == (64, 32, 1, 1)  # x4: the first stage widens too
    assert sd["fc.weight"].shape == (100, 256)


def test_wrn_16_2_has_mdistiller_names_and_shapes():
    sd = build("wrn_16_2", num_classes=100).state_dict()
    expected = ["conv1.weight"]
    for b in (1, 2, 3):
        for i in range(2):
            p = f"block{b}.layer.{i}"
            expected += [*_bn(f"{p}.bn1"), f"{p}.conv1.weight", *_bn(f"{p}.bn2"), f"{p}.conv2.weight"]
            if i == 0:
                expected.append(f"{p}.convShortcut.weight")
    expected += [*_bn("bn1"), "fc.weight", "fc.bias"]
    assert list(sd) == expected
    assert sd["block1.layer.0.convShortcut.weight"].shape == (32, 16, 1, 1)
    assert sd["block3.layer.1.conv2.weight"].shape == (128, 128, 3, 3)
    assert sd["fc.weight"].shape == (100, 128)


def test_mobilenetv2_half_has_mdistiller_names_and_shapes():
    sd = build("mobilenetv2", num_classes=100).state_dict()
    expected = ["conv1.0.weight", *_bn("conv1.1")]
    for stage, repeats in enumerate([1, 2, 3, 4, 3, 3, 1]):
        for i in range(repeats):
            p = f"blocks.{stage}.{i}.conv"
            for conv, bn in ((0, 1), (3, 4), (6, 7)):
                expected += [f"{p}.{conv}.weight", *_bn(f"{p}.{bn}")]
    expected += ["conv2.0.weight", *_bn("conv2.1"), "classifier.0.weight", "classifier.0.bias"]
    assert list(sd) == expected
    assert sd["conv1.0.weight"].shape == (16, 3, 3, 3)
    assert sd["blocks.0.0.conv.0.weight"].shape == (16, 16, 1, 1)  # t = 1 keeps its expansion conv
    assert sd["blocks.0.0.conv.6.weight"].shape == (8, 16, 1, 1)  # width 0.5: 16 -> 8 channels
    assert sd["blocks.1.0.conv.0.weight"].shape == (48, 8, 1, 1)  # expansion T = 6
    assert sd["blocks.1.0.conv.3.weight"].shape == (48, 1, 3, 3)
    assert sd["conv2.0.weight"].shape == (1280, 160, 1, 1)
    assert sd["classifier.0.weight"].shape == (100, 1280)


@pytest.mark.parametrize(
    ("name", "key", "shape"),
    [
        ("vgg13", "block0.0.weight", (64, 3, 3, 3)),
        ("vgg13", "block0.3.weight", (64, 64, 3, 3)),
        ("vgg13", "block4.4.running_var", (512,)),
        ("vgg8", "classifier.weight", (100, 512)),
        ("shufflev1", "layer1.0.conv1.weight", (54, 24, 1, 1)),
        ("shufflev1", "layer2.0.conv1.weight", (60, 80, 1, 1)),
        ("shufflev1", "layer3.3.conv3.weight", (960, 80, 1, 1)),
        ("shufflev1", "linear.weight", (100, 960)),
        ("shufflev2", "layer1.0.conv1.weight", (24, 1, 3, 3)),
        ("shufflev2", "layer1.0.conv5.weight", (58, 58, 1, 1)),
        ("shufflev2", "layer2.7.conv3.weight", (116, 116, 1, 1)),
        ("shufflev2", "conv2.weight", (1024, 464, 1, 1)),
        ("resnet18", "layer2.0.shortcut.0.weight", (128, 64, 1, 1)),
        ("resnet18", "linear.weight", (100, 512)),
        ("resnet50", "layer4.2.conv3.weight", (2048, 512, 1, 1)),
        ("imagenet/mobilenetv1", "model.0.0.weight", (32, 3, 3, 3)),
        ("imagenet/mobilenetv1", "model.1.0.weight", (32, 1, 3, 3)),
        ("imagenet/mobilenetv1", "model.13.3.weight", (1024, 1024, 1, 1)),
        ("imagenet/mobilenetv1", "fc.weight", (100, 1024)),
    ],
)
def test_reference_shapes(name, key, shape):
    assert build(name, num_classes=100).state_dict()[key].shape == shape


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("imagenet/resnet18", torchvision.models.resnet18),
        ("imagenet/mobilenet_v2", torchvision.models.mobilenet_v2),
    ],
)
def test_imagenet_models_keep_torchvision_names(name, reference):
    ours = build(name, num_classes=10).state_dict()
    theirs = reference(weights=None, num_classes=10).state_dict()
    assert [(k, tuple(v.shape)) for k, v in ours.items()] == [(k, tuple(v.shape)) for k, v in theirs.items()]


# Full (name, shape) lists of the other mdistiller families, written out from their architecture
# descriptions (models/cifar/vgg.py, resnetv2.py, ShuffleNetv1.py, ShuffleNetv2.py), for 100 classes.
Shape = tuple[int, ...]


def _bn_shapes(prefix: str, c: int) -> list[tuple[str, Shape]]:
    return [(f"{prefix}.{s}", () if s == "num_batches_tracked" else (c,)) for s in BN]


def _vgg_shapes(cfg: list[list[int]]) -> list[tuple[str, Shape]]:
    """``block{b}.{3j}`` is a biased 3x3 conv, ``block{b}.{3j+1}`` its BN; ``classifier`` is 512 -> 100."""
    out: list[tuple[str, Shape]] = []
    cin = 3
    for b, widths in enumerate(cfg):
        for j, w in enumerate(widths):
            out += [(f"block{b}.{3 * j}.weight", (w, cin, 3, 3)), (f"block{b}.{3 * j}.bias", (w,))]
            out += _bn_shapes(f"block{b}.{3 * j + 1}", w)
            cin = w
    return [*out, ("classifier.weight", (100, 512)), ("classifier.bias", (100,))]


def _resnetv2_shapes(blocks: list[int], bottleneck: bool) -> list[tuple[str, Shape]]:
    out = [("conv1.weight", (64, 3, 3, 3)), *_bn_shapes("bn1", 64)]
    expansion = 4 if bottleneck else 1
    cin = 64
    for stage, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), start=1):
        for i in range(n):
            p, stride = f"layer{stage}.{i}", 2 if stage > 1 and i == 0 else 1
            if bottleneck:
                convs = [(p + ".conv1", (planes, cin, 1, 1)), (p + ".conv2", (planes, planes, 3, 3))]
                convs.append((p + ".conv3", (4 * planes, planes, 1, 1)))
            else:
                convs = [(p + ".conv1", (planes, cin, 3, 3)), (p + ".conv2", (planes, planes, 3, 3))]
            for k, (conv, shape) in enumerate(convs, start=1):
                out += [(f"{conv}.weight", shape), *_bn_shapes(f"{p}.bn{k}", shape[0])]
            if stride != 1 or cin != expansion * planes:
                out += [(f"{p}.shortcut.0.weight", (expansion * planes, cin, 1, 1))]
                out += _bn_shapes(f"{p}.shortcut.1", expansion * planes)
            cin = expansion * planes
    return [*out, ("linear.weight", (100, 512 * expansion)), ("linear.bias", (100,))]


def _shufflev1_shapes() -> list[tuple[str, Shape]]:
    """Groups 3; the first block after the 24-channel stem has an ungrouped first 1x1 conv."""
    out = [("conv1.weight", (24, 3, 1, 1)), *_bn_shapes("bn1", 24)]
    cin = 24
    for stage, (planes, n) in enumerate(zip((240, 480, 960), (4, 8, 4), strict=True), start=1):
        for i in range(n):
            p = f"layer{stage}.{i}"
            branch = planes - cin if i == 0 else planes  # the strided block concatenates its input
            mid, g = branch // 4, 1 if cin == 24 else 3
            out += [(f"{p}.conv1.weight", (mid, cin // g, 1, 1)), *_bn_shapes(f"{p}.bn1", mid)]
            out += [(f"{p}.conv2.weight", (mid, 1, 3, 3)), *_bn_shapes(f"{p}.bn2", mid)]
            out += [(f"{p}.conv3.weight", (branch, mid // 3, 1, 1)), *_bn_shapes(f"{p}.bn3", branch)]
            cin = planes
    return [*out, ("linear.weight", (100, 960)), ("linear.bias", (100,))]


def _shufflev2_shapes() -> list[tuple[str, Shape]]:
    out = [("conv1.weight", (24, 3, 1, 1)), *_bn_shapes("bn1", 24)]
    cin = 24
    for stage, (planes, n) in enumerate(zip((116, 232, 464), (3, 7, 3), strict=True), start=1):
        mid, p = planes // 2, f"layer{stage}.0"
        down = [(cin, 1, 3, 3), (mid, cin, 1, 1), (mid, cin, 1, 1), (mid, 1, 3, 3), (mid, mid, 1, 1)]
        for k, shape in enumerate(down, start=1):
            out += [(f"{p}.conv{k}.weight", shape), *_bn_shapes(f"{p}.bn{k}", shape[0])]
        for i in range(1, n + 1):
            p = f"layer{stage}.{i}"
            for k, shape in enumerate([(mid, mid, 1, 1), (mid, 1, 3, 3), (mid, mid, 1, 1)], start=1):
                out += [(f"{p}.conv{k}.weight", shape), *_bn_shapes(f"{p}.bn{k}", mid)]
        cin = planes
    out += [("conv2.weight", (1024, 464, 1, 1)), *_bn_shapes("bn2", 1024)]
    return [*out, ("linear.weight", (100, 1024)), ("linear.bias", (100,))]


_VGG_CFG = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3],
    "vgg19": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}
REFERENCE_SHAPES = {
    **{name: functools.partial(_vgg_shapes, cfg) for name, cfg in _VGG_CFG.items()},
    "resnet18": functools.partial(_resnetv2_shapes, [2, 2, 2, 2], False),
    "resnet34": functools.partial(_resnetv2_shapes, [3, 4, 6, 3], False),
    "resnet50": functools.partial(_resnetv2_shapes, [3, 4, 6, 3], True),
    "shufflev1": _shufflev1_shapes,
    "shufflev2": _shufflev2_shapes,
}


@pytest.mark.parametrize("name", sorted(REFERENCE_SHAPES))
def test_every_key_and_shape_follows_mdistiller(name):
    ours = [(k, tuple(v.shape)) for k, v in build(name, num_classes=100).state_dict().items()]
    expected = REFERENCE_SHAPES[name]()
    assert ours == expected
    # and the list adds up to the published parameter count (buffers excluded)
    params = sum(
        math.prod(s)
        for k, s in expected
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert params == count_at_100(name)


# ------------------------------------------------------------ forward contract
def _head(model: nn.Module) -> nn.Linear:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


@pytest.mark.parametrize("name", CANONICAL)
def test_forward_contract(name):
    torch.manual_seed(0)
    model = build(name, num_classes=10)
    # Small inputs keep this fast; every model pools adaptively, so 16x16 (32x32 for ImageNet stems) works.
    size = 32 if name.startswith("imagenet/") else 16
    x = torch.randn(2, 3, size, size)
    model.train()
    logits, feats = model(x, return_features=True)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert set(feats) == {"feats", "preact_feats", "pooled_feat"}
    assert feats["feats"] and all(f.dim() == 4 and f.shape[0] == 2 for f in feats["feats"])
    # Autograd through logits and every feature (no in-place op breaks it).
    every = feats["feats"] + feats["preact_feats"]
    (logits.square().mean() + sum(f.mean() for f in every)).backward()
    assert all(p.grad is not None for p in model.parameters())

    model.eval()
    x = torch.randn(2, 3, 32, 32)  # the CIFAR resolution
    with torch.no_grad():
        plain = model(x)
        again, feats = model(x, return_features=True)
        assert plain.shape == (2, 10)
        assert isinstance(plain, torch.Tensor) and torch.allclose(plain, again, atol=1e-6)
        head = _head(model)
        assert feats["pooled_feat"].shape == (2, head.in_features)
        assert torch.allclose(head(feats["pooled_feat"]), plain, atol=1e-5), (
            "pooled feature does not feed the head"
        )


@pytest.mark.parametrize(
    "name",
    [
        "resnet20",
        "wrn_16_2",
        "vgg8",
        "shufflev2",
        "tiny_cnn",
        "imagenet/resnet18",
        "imagenet/mobilenet_v2",
        "imagenet/mobilenetv1",
    ],
)
def test_in_channels_changes_only_the_first_conv(name):
    rgb, gray = build(name, num_classes=10), build(name, num_classes=10, in_channels=1)
    changed = {k for k, v in rgb.state_dict().items() if gray.state_dict()[k].shape != v.shape}
    assert len(changed) == 1
    (key,) = changed
    assert gray.state_dict()[key].shape[1] == 1 and rgb.state_dict()[key].shape[1] == 3
    size = 32 if name.startswith("imagenet/") else 16
    assert gray.eval()(torch.randn(2, 1, size, size)).shape == (2, 10)


@functools.cache
def _digits_batch() -> torch.Tensor:
    """Two real images of the embedded default (1 channel, 32x32), normalized as the engine does."""
    from ekd_plugins.datasets.digits import digits

    split = digits().split("test")
    return torch.stack([split[0][0], split[1][0]])


@pytest.mark.parametrize("name", CANONICAL)
def test_every_model_runs_on_the_embedded_digits(name):
    x = _digits_batch()
    assert x.shape == (2, 1, 32, 32)
    torch.manual_seed(0)
    model = build(name, num_classes=10, in_channels=1)
    model.train()
    model(x).sum().backward()  # a training step's forward/backward on a 2-image batch
    with torch.no_grad():
        logits = model.eval()(x)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


def test_ekd_list_models_shows_the_parameter_counts(ekd):
    code, out, err = ekd("list", "models")
    assert code == 0, err
    shown = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}
    for name in CANONICAL:
        assert shown[name] == f"{count_at_100(name) / 1e6:.3f}M", name
    for name, millions in PUBLISHED_M.items():
        assert shown[name] == f"{millions:.3f}M", name


@pytest.mark.parametrize("name", ["resnet20", "shufflev1", "mobilenetv2"])
def test_channels_last_gives_the_same_logits(name):
    torch.manual_seed(0)
    model = build(name, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(expected, got, atol=1e-4)


def test_tiny_cnn_is_tiny_and_takes_small_inputs():
    model = build("tiny_cnn", num_classes=10, in_channels=1)
    assert count(model) < 5000
    assert model.eval()(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="unexpected keyword"):
        build("resnet20", num_classes=10, colour="blue")

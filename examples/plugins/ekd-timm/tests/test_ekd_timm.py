"""ekd-timm: static registration, and (when timm is importable) real models with ekd's forward contract."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import ekd_timm
import pytest
import torch

from ekdcli.sdk.errors import PluginError, UsageError
from ekdcli.sdk.plugins import Component


def collect() -> dict[str, dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}

    def register(
        name: str,
        factory: Any,
        *,
        aliases: tuple[str, ...] = (),
        description: str = "",
        info: dict[str, Any] | None = None,
    ) -> None:
        assert name not in seen, name
        seen[name] = {"factory": factory, "aliases": aliases, "description": description, "info": info}

    ekd_timm.register_models(register)
    return seen


def component(name: str) -> Component:
    entry = collect()[f"timm/{name}"]
    return Component(kind="models", name=f"timm/{name}", factory=entry["factory"], plugin="ekd-timm")


def test_registers_the_curated_table_under_the_prefix() -> None:
    seen = collect()
    assert 20 <= len(seen) <= 40
    assert all(name.startswith("timm/") for name in seen)
    for wanted in (
        "resnet18",
        "resnet50",
        "resnet10t",
        "mobilenetv3_small_100",
        "efficientnet_b0",
        "convnext_atto",
    ):
        assert f"timm/{wanted}" in seen
    for name, entry in seen.items():
        assert callable(entry["factory"]) and entry["info"]["timm_name"] == name.removeprefix("timm/")
        assert isinstance(entry["info"]["params_100"], int) and "never downloads" in entry["description"]


def test_registration_imports_neither_timm_nor_torch() -> None:
    code = (
        "import sys, ekd_timm\n"
        "ekd_timm.register_models(lambda *a, **k: None)\n"
        "print(sorted(m for m in ('timm', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_every_name_exists_in_timm_with_the_advertised_size() -> None:
    timm = pytest.importorskip("timm")
    available = set(timm.list_models())
    for name, entry in collect().items():
        info = entry["info"]
        assert info["timm_name"] in available, name
        with torch.device("meta"):  # no memory, no initialization cost: parameters are counted by shape
            model = timm.create_model(info["timm_name"], num_classes=100, in_chans=3, **info["defaults"])
        assert sum(p.numel() for p in model.parameters()) == info["params_100"], name
        # what the info promises feature methods: forward_intermediates and feature_info exist
        assert info["features"] == ["feats", "pooled_feat"] and info["model_hooks"] == ["stage_channels"]
        assert hasattr(model, "forward_intermediates") and len(model.feature_info) >= 4, name


def test_a_tiny_timm_model_follows_the_forward_contract_at_32x32() -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = component("resnet10t").build(num_classes=10, in_channels=1).eval()
    assert isinstance(model, timm.models.ResNet)
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        logits = model(x)
        again, features = model(x, return_features=True)
    assert logits.shape == (3, 10)
    torch.testing.assert_close(again, logits)
    assert features["pooled_feat"].shape == (3, model.num_features) == (3, 512)
    torch.testing.assert_close(model.get_classifier()(features["pooled_feat"]), logits)
    # feats: the stem and the four stages, their channels are get_stage_channels()
    assert [tuple(f.shape) for f in features["feats"]] == [
        (3, 64, 16, 16),
        (3, 64, 8, 8),
        (3, 128, 4, 4),
        (3, 256, 2, 2),
        (3, 512, 1, 1),
    ]
    assert model.get_stage_channels() == [64, 64, 128, 256, 512] and features["preact_feats"] == []
    with torch.no_grad():
        torch.testing.assert_close(features["feats"][-1], model.forward_features(x))
    # parameter names are timm's own: a plain timm state dict loads and gives the same logits
    plain = timm.create_model("resnet10t", pretrained=False, num_classes=10, in_chans=1).eval()
    assert list(plain.state_dict()) == list(model.state_dict())
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(plain(x), logits)


def test_a_vit_runs_on_cifar_sized_images_and_trains() -> None:
    pytest.importorskip("timm")
    torch.manual_seed(0)
    model = component("vit_tiny_patch16_224").build(num_classes=5)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 4])
    logits, features = model(x, return_features=True)
    assert logits.shape == (2, 5) and features["pooled_feat"].shape == (2, 192)
    assert len(features["feats"]) == 12 and features["feats"][0].shape == (2, 192, 2, 2)  # 12 blocks
    torch.nn.functional.cross_entropy(logits, y).backward()
    assert model.head.weight.grad is not None and torch.isfinite(model.head.weight.grad).all()


def test_bad_requests_are_clear_errors() -> None:
    pytest.importorskip("timm")
    with pytest.raises(UsageError, match="never downloads pretrained weights"):
        component("resnet10t").build(num_classes=10, pretrained=True)
    with pytest.raises(UsageError, match="does not accept that option"):
        component("resnet10t").build(num_classes=10, no_such_option=1)
    with pytest.raises(UsageError, match="positive number of classes"):
        component("resnet10t").build(num_classes=0)


def test_a_model_without_forward_intermediates_says_to_upgrade_timm() -> None:
    from ekd_timm.models import adapt

    class Old(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    model = adapt(Old())
    assert torch.equal(model(torch.ones(1)), torch.ones(1))  # logits as before
    with pytest.raises(PluginError, match="cannot give the intermediate features of Old.*pip install -U timm"):
        model(torch.ones(1), return_features=True)


def test_missing_timm_is_a_plugin_error_saying_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` raise ImportError
    with pytest.raises(PluginError, match="needs the timm package.*pip install timm"):
        component("resnet10t").build(num_classes=10)

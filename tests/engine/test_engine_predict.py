"""predict / evaluate_model against direct computation in float64."""

from __future__ import annotations

import pytest
import torch

from ekdcli.engine.options import EngineOptions
from ekdcli.engine.predict import evaluate_model, predict
from ekdcli.engine.runtime import Runtime
from ekdcli.engine.testing import TinyNet, synthetic_dataset


def normalized(images: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (images.float() / 255 - m) / s


def test_predict_returns_logits_in_index_order() -> None:
    data = synthetic_dataset(train=50, test=20)
    runtime = Runtime(EngineOptions(device="cpu", precision="fp32"))
    torch.manual_seed(0)
    model = TinyNet()
    model.train()  # predict must switch to eval mode and back
    logits, labels = predict(model, data, "train", runtime, batch_size=16)
    assert model.training
    assert logits.dtype == torch.float32 and logits.shape == (50, 4) and logits.device.type == "cpu"
    assert torch.equal(labels, data.train_labels)
    with torch.no_grad():
        expected = model.eval()(normalized(data.train_images, data.mean, data.std))
    assert torch.allclose(logits, expected, atol=1e-5)
    limited, limited_labels = predict(model, data, "test", runtime, batch_size=7, limit=9)
    assert limited.shape == (9, 4) and torch.equal(limited_labels, data.test_labels[:9])


def test_evaluate_model_matches_float64_metrics() -> None:
    data = synthetic_dataset(test=30, classes=6)
    runtime = Runtime(EngineOptions(device="cpu", precision="fp32"))
    torch.manual_seed(1)
    model = TinyNet(classes=6)
    result = evaluate_model(model, data, "test", runtime)
    with torch.no_grad():
        z = model.eval()(normalized(data.test_images, data.mean, data.std)).double()
    y = data.test_labels
    top1 = (z.argmax(1) == y).double().mean().item()
    top5 = sum(int(y[i] in z[i].topk(5).indices) for i in range(30)) / 30
    loss = (torch.logsumexp(z, 1) - z[torch.arange(30), y]).mean().item()
    assert result["n"] == 30
    assert result["top1"] == pytest.approx(top1)
    assert result["top5"] == pytest.approx(top5)
    assert result["loss"] == pytest.approx(loss, rel=1e-5)


def test_predict_under_bf16_autocast_stays_close() -> None:
    data = synthetic_dataset(test=16)
    torch.manual_seed(0)
    model = TinyNet()
    exact, _ = predict(model, data, "test", Runtime(EngineOptions(device="cpu", precision="fp32")))
    low, _ = predict(model, data, "test", Runtime(EngineOptions(device="cpu", precision="bf16")))
    assert low.dtype == torch.float32
    assert torch.allclose(low, exact, atol=0.05, rtol=0.05)

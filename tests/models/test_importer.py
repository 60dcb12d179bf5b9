"""Checkpoint import: mdistiller / RepDistiller / DataParallel layouts, safety, and clear mismatch errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from ekd_plugins.models.cifar_resnet import resnet20
from ekd_plugins.models.wrn import wrn_16_2
from torch import nn

from ekdcli.store.importer import check_state_dict, convert, read_state_dict
from ekdcli.store.weights import save_tensors
from ekdcli.util.errors import UsageError


class NotAWeight:
    """A custom class: pickling it into a checkpoint makes the file unsafe to load."""


def trained_like(factory, num_classes: int = 10, seed: int = 0) -> nn.Module:
    """A model whose BN statistics and counters differ from a fresh one (as in a real checkpoint)."""
    torch.manual_seed(seed)
    model = factory(num_classes=num_classes)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, 32, 32) * 2 + 0.5)
    return model.eval()


@pytest.mark.parametrize("factory", [resnet20, wrn_16_2])
def test_mdistiller_checkpoint_round_trip_gives_identical_logits(tmp_path, factory):
    source = trained_like(factory)
    sd = source.state_dict()
    # mdistiller / RepDistiller layout: weights under "model", plus training state.
    checkpoint = {
        "epoch": 240,
        "model": sd,
        "best_acc": torch.tensor(71.5),
        "optimizer": {"state": {}, "lr": 0.05},
    }
    torch.save(checkpoint, tmp_path / "ckpt_epoch_240.pth")

    loaded = read_state_dict(tmp_path / "ckpt_epoch_240.pth")
    fresh = factory(num_classes=10)
    check_state_dict(fresh, loaded)
    converted = convert(fresh, loaded)
    assert list(converted) == list(fresh.state_dict())
    fresh.load_state_dict(converted, strict=True)
    fresh.eval()

    for key, value in sd.items():  # buffers too: running stats and num_batches_tracked
        assert torch.equal(converted[key], value), key
    assert converted["bn1.num_batches_tracked"].item() == 2
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(fresh(x), source(x))


@pytest.mark.parametrize("wrapper", ["state_dict", "net", None])
def test_other_wrappers_and_bare_state_dicts(tmp_path, wrapper):
    sd = trained_like(resnet20).state_dict()
    torch.save(sd if wrapper is None else {wrapper: sd, "epoch": 3}, tmp_path / "w.pth")
    loaded = read_state_dict(tmp_path / "w.pth")
    assert list(loaded) == list(sd) and all(torch.equal(loaded[k], sd[k]) for k in sd)


def test_nested_wrappers_are_unwrapped(tmp_path):
    sd = resnet20(num_classes=10).state_dict()
    torch.save({"model": {"state_dict": sd}}, tmp_path / "nested.pth")
    assert set(read_state_dict(tmp_path / "nested.pth")) == set(sd)


def test_dataparallel_prefix_is_stripped(tmp_path):
    source = trained_like(resnet20)
    sd = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"model": sd}, tmp_path / "dp.pth")
    loaded = read_state_dict(tmp_path / "dp.pth")
    assert set(loaded) == set(source.state_dict())
    fresh = resnet20(num_classes=10)
    fresh.load_state_dict(convert(fresh, loaded))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), source(x))


def test_prefix_selects_the_student_of_a_distiller_checkpoint(tmp_path):
    student, teacher = resnet20(num_classes=10), wrn_16_2(num_classes=10)
    sd = {f"module.student.{k}": v for k, v in student.state_dict().items()}
    sd |= {f"module.teacher.{k}": v for k, v in teacher.state_dict().items()}
    torch.save({"model": sd}, tmp_path / "distiller.pth")
    loaded = read_state_dict(tmp_path / "distiller.pth", prefix="student.")
    assert set(loaded) == set(student.state_dict())
    with pytest.raises(UsageError, match="no keys starting with 'pupil.'"):
        read_state_dict(tmp_path / "distiller.pth", prefix="pupil.")


def test_safetensors_files_are_read(tmp_path):
    source = trained_like(wrn_16_2)
    save_tensors(tmp_path / "w.safetensors", source.state_dict(), {"arch": "wrn_16_2"})
    loaded = read_state_dict(tmp_path / "w.safetensors")
    fresh = wrn_16_2(num_classes=10)
    fresh.load_state_dict(convert(fresh, loaded))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), source(x))


def test_mismatch_lists_missing_unexpected_and_misshaped_keys():
    model = resnet20(num_classes=100)
    sd = dict(resnet20(num_classes=10).state_dict())
    del sd["layer1.0.conv1.weight"], sd["layer3.2.bn2.bias"]
    sd["extra.weight"] = torch.zeros(3)
    with pytest.raises(UsageError) as info:
        check_state_dict(model, sd, name="resnet20")
    message = info.value.message
    assert "does not fit resnet20" in message
    assert "2 missing keys: layer1.0.conv1.weight, layer3.2.bn2.bias" in message
    assert "1 unexpected keys: extra.weight" in message
    assert "fc.weight (checkpoint [10, 64] vs model [100, 64])" in message
    assert "fc.bias (checkpoint [10] vs model [100])" in message
    assert "2 mis-shaped keys" in message
    with pytest.raises(UsageError, match="does not fit"):
        convert(model, sd)


def test_long_mismatch_lists_are_truncated_with_counts():
    # A wrn_16_2 checkpoint offered to resnet20: almost nothing matches.
    with pytest.raises(UsageError) as info:
        check_state_dict(resnet20(num_classes=10), wrn_16_2(num_classes=10).state_dict())
    message = info.value.message
    expected_missing = [k for k in resnet20().state_dict() if k not in wrn_16_2().state_dict()]
    expected_missing = [k for k in expected_missing if not k.endswith("num_batches_tracked")]
    shown = re.search(r"(\d+) missing keys: (.*?)\((\d+) more\)", message)
    assert shown is not None, message
    assert int(shown.group(1)) == len(expected_missing)
    assert int(shown.group(3)) == len(expected_missing) - 10
    assert shown.group(2).count(",") == 10  # ten names, then ", ... ("
    assert "CifarResNet" in message  # no name given: the class name


def test_old_checkpoints_without_batch_counters_are_accepted():
    source = trained_like(resnet20)
    sd = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    fresh = resnet20(num_classes=10)
    check_state_dict(fresh, sd)
    converted = convert(fresh, sd)
    assert converted["bn1.num_batches_tracked"].item() == 0  # the fresh model's own counter
    assert torch.equal(converted["bn1.running_var"], source.state_dict()["bn1.running_var"])


def test_half_precision_checkpoints_take_the_model_dtype():
    sd = {
        k: (v.half() if v.is_floating_point() else v)
        for k, v in resnet20(num_classes=10).state_dict().items()
    }
    converted = convert(resnet20(num_classes=10), sd)
    assert converted["conv1.weight"].dtype == torch.float32
    assert converted["bn1.num_batches_tracked"].dtype == torch.int64
    assert torch.equal(converted["conv1.weight"], sd["conv1.weight"].float())


def test_convert_returns_independent_tensors():
    model = resnet20(num_classes=10)
    sd = model.state_dict()
    converted = convert(model, sd)
    converted["conv1.weight"].zero_()
    assert sd["conv1.weight"].abs().sum() > 0


def test_pickled_custom_objects_are_refused(tmp_path):
    torch.save(
        {"model": resnet20(num_classes=10).state_dict(), "args": NotAWeight()}, tmp_path / "unsafe.pth"
    )
    with pytest.raises(UsageError, match=r"NotAWeight\) besides tensors, which ekd refuses to unpickle"):
        read_state_dict(tmp_path / "unsafe.pth")


def test_numpy_scalars_beside_the_weights_are_fine(tmp_path):
    sd = resnet20(num_classes=10).state_dict()
    torch.save({"model": sd, "best_acc": np.float64(71.3), "epoch": np.int64(240)}, tmp_path / "np.pth")
    assert set(read_state_dict(tmp_path / "np.pth")) == set(sd)


def test_files_that_are_not_checkpoints(tmp_path):
    with pytest.raises(UsageError, match="no checkpoint file at"):
        read_state_dict(tmp_path / "missing.pth")
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    with pytest.raises(UsageError, match="is not a readable PyTorch checkpoint"):
        read_state_dict(tmp_path / "notes.pth")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(UsageError, match=r"holds no state dict \(found top-level keys \['epoch', 'lr'\]\)"):
        read_state_dict(tmp_path / "meta.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(UsageError, match="not a readable safetensors file"):
        read_state_dict(tmp_path / "bad.safetensors")

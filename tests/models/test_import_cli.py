"""`ekd import` as a user runs it: published layouts in, a checked safetensors file in the store out."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from ekd_plugins.models.cifar_resnet import resnet8, resnet20
from ekd_plugins.models.wrn import wrn_16_2

from ekdcli.store.weights import load_tensors


def _trained_like(factory: Any, seed: int = 0) -> torch.nn.Module:
    """Random weights with BatchNorm statistics and counters that differ from a fresh model's."""
    torch.manual_seed(seed)
    model = factory(num_classes=100)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32) * 2 + 0.5)
    return model.eval()


def _logits_from_store(path: Path, factory: Any, x: torch.Tensor) -> torch.Tensor:
    tensors, _ = load_tensors(path)
    model = factory(num_classes=100)
    model.load_state_dict(tensors, strict=True)
    with torch.no_grad():
        return model.eval()(x)


def _store_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "store").rglob("*.safetensors"))


@pytest.mark.parametrize(
    ("layout", "factory", "arch"),
    [
        ("model", resnet20, "resnet20"),
        ("state_dict+module", wrn_16_2, "wrn16_2"),
        ("bare", resnet8, "res8"),
    ],
)
def test_round_trip_gives_identical_logits(
    tmp_path: Path, ekd: Any, layout: str, factory: Any, arch: str
) -> None:
    source = _trained_like(factory)
    sd = source.state_dict()
    if layout == "model":  # mdistiller / RepDistiller: {'model': sd, ...training state}
        checkpoint: Any = {"model": sd, "epoch": 240, "best_acc": 71.2}
    elif layout == "state_dict+module":  # DataParallel-trained
        checkpoint = {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}
    else:
        checkpoint = sd
    torch.save(checkpoint, tmp_path / "ckpt.pth")

    code, out, err = ekd("import", "ckpt.pth", "--model", arch, "--data", "cifar100", "--json")
    assert code == 0, err
    result = json.loads(out)
    canonical = factory.__name__
    target = tmp_path / "store" / "models" / "cifar100" / f"{canonical}.safetensors"
    assert result == {"arch": canonical, "data": "cifar100", "tensors": len(sd), "weights": str(target)}

    tensors, metadata = load_tensors(target)
    assert set(tensors) == set(sd) and all(torch.equal(tensors[k], v) for k, v in sd.items())
    assert metadata["arch"] == canonical and metadata["dataset"] == "cifar100"
    assert metadata["num_classes"] == "100" and metadata["in_channels"] == "3"
    assert metadata["made_by"] == "ekd import"
    assert metadata["source"] == str((tmp_path / "ckpt.pth").resolve())
    assert metadata["source_sha256"] == hashlib.sha256((tmp_path / "ckpt.pth").read_bytes()).hexdigest()

    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(_logits_from_store(target, factory, x), source(x))


def test_name_and_prefix_pick_the_student_of_a_distiller_checkpoint(tmp_path: Path, ekd: Any) -> None:
    student, teacher = _trained_like(resnet8), _trained_like(wrn_16_2, seed=1)
    sd = {f"module.student.{k}": v for k, v in student.state_dict().items()}
    sd |= {f"module.teacher.{k}": v for k, v in teacher.state_dict().items()}
    torch.save({"model": sd}, tmp_path / "distiller.pth")

    code, _, err = ekd("import", "distiller.pth", "--model", "resnet8", "--data", "cifar100")
    assert code == 2 and "ekd import --prefix student." in err and "Traceback" not in err
    code, _, err = ekd(
        "import", "distiller.pth", "--model", "resnet8", "--data", "cifar100", "--prefix", "student.",
        "--name", "kd-student",
    )  # fmt: skip
    assert code == 0, err
    target = tmp_path / "store" / "models" / "cifar100" / "kd-student.safetensors"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(_logits_from_store(target, resnet8, x), student(x))


def _fails(ekd: Any, *args: str) -> str:
    code, out, err = ekd("import", *args)
    assert code == 2, (out, err)
    assert "Traceback" not in err and out == ""
    return err


def test_user_errors_are_one_clear_message_and_write_nothing(tmp_path: Path, ekd: Any) -> None:
    torch.save({"model": _trained_like(resnet20).state_dict()}, tmp_path / "r20.pth")

    # the wrong architecture for the checkpoint: every kind of offending key is listed
    err = _fails(ekd, "r20.pth", "--model", "wrn_16_2", "--data", "cifar100")
    assert "the checkpoint does not fit wrn_16_2 (100 classes and 3 input channel(s)" in err
    assert "missing keys: block1.layer.0.bn1.weight" in err
    assert "unexpected keys: layer1.0.conv1.weight" in err
    assert "mis-shaped keys: bn1.weight (checkpoint [16] vs model [128])" in err

    # the wrong data for it: the message says what the model was built for and how to override
    err = _fails(ekd, "r20.pth", "--model", "resnet20", "--data", "cifar10")
    assert "(10 classes and 3 input channel(s), as for --data cifar10; --num-classes" in err
    assert "fc.weight (checkpoint [100, 64] vs model [10, 64])" in err
    code, _, err = ekd(
        "import", "r20.pth", "--model", "resnet20", "--data", "cifar10", "--num-classes", "100"
    )
    assert code == 0, err  # an explicit --num-classes wins over the dataset's

    (tmp_path / "notes.pth").write_text("these are not weights")
    assert "notes.pth is not a readable PyTorch checkpoint" in _fails(
        ekd, "notes.pth", "--model", "resnet20", "--data", "cifar100"
    )
    (tmp_path / "empty.pth").write_bytes(b"")
    assert "empty.pth is not a readable PyTorch checkpoint (the file is empty)" in _fails(
        ekd, "empty.pth", "--model", "resnet20", "--data", "cifar100"
    )
    assert "does not exist" in _fails(ekd, "missing.pth", "--model", "resnet20", "--data", "cifar100")
    assert "say which architecture" in _fails(ekd, "r20.pth", "--data", "cifar100")
    err = _fails(ekd, "r20.pth", "--model", "resnet2O", "--data", "cifar100")
    assert "unknown model 'resnet2O'. Did you mean" in err and "'resnet20'" in err
    # only the one --num-classes import above reached the store
    assert _store_files(tmp_path) == [tmp_path / "store" / "models" / "cifar10" / "resnet20.safetensors"]


def test_pickled_objects_are_refused_not_run(tmp_path: Path, ekd: Any) -> None:
    import argparse  # what training scripts commonly save beside the weights

    torch.save(
        {"model": resnet8(num_classes=100).state_dict(), "opt": argparse.Namespace(lr=0.05)},
        tmp_path / "with_args.pth",
    )
    err = _fails(ekd, "with_args.pth", "--model", "resnet8", "--data", "cifar100")
    assert "pickled Python object (argparse.Namespace)" in err and "refuses to unpickle" in err
    assert _store_files(tmp_path) == []


def test_importing_over_a_store_file_says_what_it_replaces(tmp_path: Path, ekd: Any) -> None:
    torch.save(_trained_like(resnet8).state_dict(), tmp_path / "a.pth")
    torch.save(_trained_like(resnet8, seed=1).state_dict(), tmp_path / "b.pth")
    args = ("--model", "resnet8", "--data", "cifar100", "--num-classes", "100", "--in-channels", "3")
    code, out, err = ekd("import", str(tmp_path / "a.pth"), *args)
    assert code == 0, err
    assert "replacing" not in out
    target = tmp_path / "store" / "models" / "cifar100" / "resnet8.safetensors"
    first = target.read_bytes()
    code, out, err = ekd("import", str(tmp_path / "b.pth"), *args)
    assert code == 0, err
    assert out.splitlines()[0] == (
        f"replacing {target} (no recorded accuracy, from {tmp_path / 'a.pth'}); "
        "import with --name NAME to keep both"
    )
    assert target.read_bytes() != first

"""``ekd export``: every format runs like the eager student (to 1e-4), and bad requests are one sentence."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)  # the published CIFAR-100 training-set statistics
CIFAR100_STD = (0.2675, 0.2565, 0.2761)


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A resnet8 student trained one short epoch on the tiny CIFAR-100 file: (store, run directory)."""
    import ekdcli

    data = Path(os.environ["EKD_SHARED_DATA"]) / "tiny_cifar100.npz"
    if not data.is_file():
        pytest.skip(f"shared data not found at {data}")
    store = tmp_path_factory.mktemp("export") / "store"
    run = ekdcli.train(
        "resnet8", data="cifar100", data_root=str(data), store=str(store), epochs=1, limit_train=64
    )
    return store, run.run_dir


def _test_images(shared_data: Path) -> torch.Tensor:
    """The tiny file's 200 test images as uint8 [N, 3, 32, 32]."""
    return (
        torch.from_numpy(np.load(shared_data / "tiny_cifar100.npz")["x_test"])
        .permute(0, 3, 1, 2)
        .contiguous()
    )


def _run_file(path: Path, fmt: str, images: torch.Tensor) -> torch.Tensor:
    """The exported file's logits, loaded by its own runtime."""
    if fmt == "torchscript":
        return torch.jit.load(str(path))(images)
    if fmt == "pt2":
        return torch.export.load(str(path)).module()(images)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: images.numpy()})[0])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")  # the format asked for
@pytest.mark.parametrize("preprocessing", [False, True], ids=["float", "uint8"])
@pytest.mark.parametrize("fmt", ["torchscript", "onnx", "pt2"])
def test_the_exported_student_gives_the_eager_logits(
    ekd,
    cifar_run: tuple[Path, Path],
    shared_data: Path,
    tmp_path: Path,
    fmt: str,
    preprocessing: bool,  # noqa: ANN001
) -> None:
    store, run_dir = cifar_run
    out = tmp_path / f"student-{fmt}"
    flags = ["--with-preprocessing"] if preprocessing else []
    code, stdout, err = ekd(
        "export", str(run_dir), "--format", fmt, "--out", str(out), "--store", str(store), *flags, "--json"
    )
    assert code == 0, err
    result = json.loads(stdout)
    assert (result["path"], result["arch"], result["checked_images"]) == (str(out), "resnet8", 200)
    assert result["input"] == {
        "dtype": "uint8" if preprocessing else "float32",
        "shape": ["batch", 3, 32, 32],
    }
    assert result["max_abs_difference"] <= 1e-4

    import ekdcli

    student = ekdcli.load_model(run_dir)
    pixels = _test_images(shared_data)
    mean = torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR100_STD).view(1, 3, 1, 1)
    normalized = (pixels.float() / 255 - mean) / std
    with torch.no_grad():
        eager = student(normalized)
        exported = _run_file(out, fmt, pixels if preprocessing else normalized)
        assert exported.shape == (200, 100)
        assert float((exported - eager).abs().max()) <= 1e-4
        one = _run_file(out, fmt, (pixels if preprocessing else normalized)[:1])  # any batch size
        assert float((one - eager[:1]).abs().max()) <= 1e-4


@pytest.mark.slow
def test_the_default_file_sits_beside_the_weights_and_is_not_replaced_without_force(ekd, cifar_run) -> None:  # noqa: ANN001
    store, run_dir = cifar_run
    args = (
        "export",
        run_dir.name,
        "--format",
        "pt2",
        "--store",
        str(store),
        "--quiet",
    )  # a run name in the store
    code, _, err = ekd(*args)
    assert code == 0, err
    path = run_dir / "best.pt2"
    written = path.read_bytes()
    code, out, err = ekd(*args)
    assert (code, out) == (2, "")
    assert err == f"error: {path} already exists; pass --force to replace it or choose another --out.\n"
    assert path.read_bytes() == written
    code, _, err = ekd(*args, "--force")
    assert code == 0, err


def test_a_run_without_weights_is_one_sentence(ekd, tmp_path: Path) -> None:  # noqa: ANN001
    run_dir = tmp_path / "store" / "runs" / "fresh"
    run_dir.mkdir(parents=True)
    (run_dir / "config.toml").write_text('data = "digits"\n')
    code, out, err = ekd("export", str(run_dir), "--format", "torchscript")
    assert (code, out) == (2, "")
    assert err == (
        f"error: run {run_dir} holds no weights (no best.safetensors or last.safetensors); it has not finished "
        f"an epoch: wait for it, or continue it with --resume {run_dir}.\n"
    )


class _BatchBranch(torch.nn.Module):
    """Different maths for batches of more than two images: a trace keeps one branch, torch.export refuses."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc(x.mean(dim=(2, 3)))
        return logits if x.shape[0] > 2 else -logits


@pytest.fixture
def branchy(tmp_path: Path):  # noqa: ANN201
    """A registered model ``branchy`` with weights for the digits (10 classes, 1 channel)."""
    from ekdcli.sdk.plugins import registry, reset_plugins
    from ekdcli.sdk.registry import Component
    from ekdcli.store.weights import save_tensors

    registry("models").add(Component("models", "branchy", _BatchBranch, "tests"))
    weights = tmp_path / "branchy.safetensors"
    metadata = {"arch": "branchy", "num_classes": 10, "in_channels": 1, "dataset": "digits"}
    save_tensors(weights, _BatchBranch().state_dict(), metadata)
    yield weights
    reset_plugins()


def test_a_model_a_format_cannot_hold_is_one_sentence_and_writes_nothing(ekd, branchy: Path) -> None:  # noqa: ANN001
    code, out, err = ekd("export", str(branchy), "--format", "pt2", "--out", "b.pt2")
    assert (code, out) == (2, "")
    assert err.startswith("error: model 'branchy' cannot be exported as pt2 (") and err.count("\n") == 1
    assert err.endswith("); try another --format.\n")
    code, out, err = ekd("export", str(branchy), "--format", "torchscript", "--out", "b.pt")
    assert (code, out) == (1, "")  # the trace kept the small-batch branch: the check catches it
    assert err.startswith("error: the torchscript export of 'branchy' gives logits up to ")
    assert err.endswith(
        "away from the eager model's (more than 0.0001); nothing was written: try another --format.\n"
    )
    assert not Path("b.pt2").exists() and not Path("b.pt").exists() and not list(Path().glob(".b.*"))


def test_onnx_without_its_packages_says_which_extra(ekd, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a)
    )
    code, out, err = ekd("export", "resnet8", "--format", "onnx")
    assert (code, out) == (2, "")
    assert (
        err
        == "error: --format onnx needs onnxruntime, which is not installed; install them with pip install 'ekd[export]'.\n"
    )


def test_check_needs_at_least_one_image(ekd) -> None:  # noqa: ANN001
    code, _, err = ekd("export", "resnet8", "--format", "pt2", "--check", "0")
    assert (code, err) == (2, "error: --check must be at least 1 test image, not 0.\n")


class _Plain(torch.nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_every_format_carries_its_metadata_and_pt2_exports_without_a_warning(
    ekd,  # noqa: ANN001
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from ekdcli import __version__
    from ekdcli.method.export import read_metadata
    from ekdcli.sdk.plugins import registry, reset_plugins
    from ekdcli.sdk.registry import Component
    from ekdcli.store.weights import save_tensors

    registry("models").add(Component("models", "plain", _Plain, "tests"))
    try:
        weights = tmp_path / "plain.safetensors"
        save_tensors(weights, _Plain().state_dict(), {"arch": "plain", "num_classes": 10, "in_channels": 1})
        for fmt, out in (("onnx", "p.onnx"), ("pt2", "p.pt2"), ("torchscript", "p.pt")):
            code, printed, err = ekd(
                "export", str(weights), "--data", "digits", "--format", fmt, "--out", out
            )
            assert code == 0, err
            assert "Unable to load package" not in err + caplog.text
            meta = read_metadata(out, fmt)
            assert (
                meta["ekd_version"] == __version__ and meta["arch"] == "plain" and meta["num_classes"] == "10"
            )
            assert meta["input"] == "normalized float32" and meta["source_weights"] == str(weights)
            assert len(json.loads(meta["mean"])) == 1 and len(json.loads(meta["std"])) == 1
            assert meta["data"] == "digits" and meta["source_run"] == ""
        import onnx

        props = {p.key for p in onnx.load("p.onnx").metadata_props}  # what an ONNX viewer shows
        assert {"ekd_version", "mean", "std", "num_classes", "source_weights"} <= props
    finally:
        reset_plugins()

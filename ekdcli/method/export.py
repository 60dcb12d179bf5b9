"""A trained model as a deployable file: TorchScript, ONNX or torch.export (``.pt2``).

Every format takes a batch of any size (the image size is fixed) and returns logits; with
the preprocessing folded in (:class:`WithPreprocessing`) it takes ``uint8 [N, C, H, W]``
images, exactly as the engine normalizes them (``(x / 255 - mean) / std``).  :func:`export`
writes the file, then :func:`load` runs it back, so the caller can compare it with the eager
model before keeping it.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

INPUT, OUTPUT = "images", "logits"


class WithPreprocessing(torch.nn.Module):
    """``model((images / 255 - mean) / std)`` for ``uint8`` images: the deployable takes raw pixels."""

    def __init__(self, model: torch.nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        shape = (1, len(mean), 1, 1)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(shape))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images.to(torch.float32) / 255.0 - self.mean) / self.std)


class LogitsOnly(torch.nn.Module):
    """The model with one input and one output (``forward(x)`` -> logits), as exporters want it."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


@contextlib.contextmanager
def _quiet() -> Any:
    """The exporters print progress and deprecation notes; ekd says what happened itself."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


# Where each format keeps ekd's metadata (normalization, classes, ekd version, source): a JSON text
# under this name in TorchScript's and torch.export's extra files, and ONNX's metadata_props keys.
METADATA_FILE = "ekd.json"


def export(
    module: torch.nn.Module,
    example: torch.Tensor,
    fmt: str,
    path: str | Path,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write ``module`` (eval mode, CPU) in format ``fmt`` with a dynamic batch dimension, carrying
    ``metadata`` (see :data:`METADATA_FILE`; ONNX: one ``metadata_props`` entry per key)."""
    module = module.eval().cpu()
    batch = torch.export.Dim("batch", min=1, max=65536)
    extra = {METADATA_FILE: json.dumps(metadata or {}, sort_keys=True)}
    with _quiet(), torch.no_grad():
        if fmt == "torchscript":
            traced = torch.jit.trace(module, example, check_trace=False)
            torch.jit.save(traced, str(path), _extra_files=extra)
        elif fmt == "pt2":
            program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
            with open(path, "wb") as handle:  # a file object: torch warns on a name not ending in .pt2
                torch.export.save(program, handle, extra_files=extra)
        elif fmt == "onnx":
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_shapes=({0: batch},),
                dynamo=True,
                external_data=False,  # the weights inside the one file: it loads after being copied alone
                verbose=False,
            )
            _onnx_metadata(path, metadata or {})
        else:
            raise ValueError(f"unknown export format {fmt!r}")


def _onnx_metadata(path: str | Path, metadata: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, metadata)
    onnx.save(proto, str(path))


def read_metadata(path: str | Path, fmt: str) -> dict[str, str]:
    """The metadata :func:`export` put into an exported file."""
    if fmt == "onnx":
        import onnx

        return {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}
    extra = {METADATA_FILE: ""}
    with _quiet():
        if fmt == "torchscript":
            torch.jit.load(str(path), _extra_files=extra)
        else:
            with open(path, "rb") as handle:
                torch.export.load(handle, extra_files=extra)
    return dict(json.loads(extra[METADATA_FILE] or "{}"))


def load(path: str | Path, fmt: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The exported file as a function ``images -> logits`` (ONNX through onnxruntime, on the CPU)."""
    with _quiet():
        if fmt == "torchscript":
            scripted = torch.jit.load(str(path), map_location="cpu")
            return lambda images: scripted(images)
        if fmt == "pt2":
            with open(path, "rb") as handle:  # a file object: torch warns on a name not ending in .pt2
                program = torch.export.load(handle).module()
            return lambda images: program(images)
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda images: torch.from_numpy(session.run(None, {name: images.numpy()})[0])


def max_difference(
    run: Callable[[torch.Tensor], torch.Tensor],
    reference: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    batch_size: int = 128,
) -> float:
    """The largest absolute difference between the logits of ``run`` and ``reference`` on ``images``."""
    worst = 0.0
    with torch.no_grad():
        for first in range(0, images.shape[0], batch_size):
            chunk = images[first : first + batch_size]
            difference = (run(chunk).float() - reference(chunk).float()).abs().max()
            worst = max(worst, float(difference))
    return worst

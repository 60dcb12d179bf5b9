"""``ekd export``: a trained student as a deployable file, checked against the eager model.

The file is written beside a temporary name, run back (TorchScript and ``.pt2`` through torch,
ONNX through onnxruntime) on the first test images, and kept only when its logits agree with
the eager model's to ``TOLERANCE``; otherwise nothing is written.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli import __version__
from ekdcli.config import Config
from ekdcli.jobs.build import dataset_key, load_dataset, load_trained
from ekdcli.jobs.common import check_output, console, open_store
from ekdcli.jobs.targets import resolve, with_run_data
from ekdcli.store import rundir
from ekdcli.util.errors import JobError, UsageError

if TYPE_CHECKING:
    import torch

    from ekdcli.sdk.contracts import Dataset

FORMATS = ("torchscript", "onnx", "pt2")
SUFFIXES = {"torchscript": ".torchscript.pt", "onnx": ".onnx", "pt2": ".pt2"}
TOLERANCE = 1e-4  # largest |exported - eager| logit difference accepted
_NEEDS = {"onnx": ("onnx", "onnxscript", "onnxruntime")}


def check_request(fmt: str, check: int) -> None:
    """Refuse an unknown format, a missing package or a bad image count before any work."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}.")
    missing = [name for name in _NEEDS.get(fmt, ()) if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(
            f"--format {fmt} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
            "installed; install them with pip install 'ekd[export]'."
        )
    if check < 1:
        raise UsageError(f"--check must be at least 1 test image, not {check}.")


def default_output(weights: Path, fmt: str, with_preprocessing: bool) -> Path:
    """Beside the weights: ``best.onnx``, ``resnet8-uint8.pt2``, ..."""
    return weights.with_name(weights.stem + ("-uint8" if with_preprocessing else "") + SUFFIXES[fmt])


@dataclass
class ExportResult:
    """What ``ekd export`` wrote: the file (``path``) in ``format``, the model's ``arch``, the
    ``weights`` it came from (and their ``run_dir``, None for a stored model or a file), the data
    key, whether the file takes uint8 pixels (``with_preprocessing``), its ``input`` (dtype and
    shape), the normalization (``mean``, ``std``), ``num_classes``, the test images it was checked
    on, the largest logit difference to the eager model, the ``tolerance`` it had to meet and the
    ``metadata`` the file carries."""

    path: Path
    format: str
    arch: str
    weights: Path
    run_dir: Path | None
    data: str
    with_preprocessing: bool
    input: dict[str, Any]
    mean: list[float]
    std: list[float]
    num_classes: int
    checked_images: int
    max_abs_difference: float
    tolerance: float
    metadata: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` result (paths as text)."""
        return {
            **dataclasses.asdict(self),
            "path": str(self.path),
            "weights": str(self.weights),
            "run_dir": str(self.run_dir) if self.run_dir is not None else None,
        }


def run_export(
    config: Config,
    target: str,
    fmt: str,
    *,
    with_preprocessing: bool = False,
    out: Path | None = None,
    force: bool = False,
    which: str = "best",
    check: int = 256,
) -> ExportResult:
    """Export ``target`` (a run, a run name, a model in the store or a .safetensors file) as ``fmt``."""
    check_request(fmt, check)
    if which not in rundir.WHICH:
        raise UsageError(f"--which must be one of {', '.join(rundir.WHICH)}, not {which!r}.")
    found = resolve(target, open_store(config), which, dataset_key(config), role="model")
    weights, run_dir = found.weights, found.run_dir
    check_output(config, out)
    path = Path(out) if out is not None else default_output(weights, fmt, with_preprocessing)
    if path.exists() and not force:
        raise UsageError(f"{path} already exists; pass --force to replace it or choose another --out.")
    config = with_run_data(config, found.run_values)
    dataset = load_dataset(config)
    data_key = dataset_key(config)
    trained = load_trained(str(weights), dataset, data_key, open_store(config), "model")
    images = _check_images(dataset, check, with_preprocessing)
    metadata = file_metadata(trained.arch, dataset, data_key, weights, run_dir, with_preprocessing)
    difference = _export_checked(
        trained.model, trained.arch, dataset, images, fmt, path, with_preprocessing, metadata
    )
    channels, height, width = (int(n) for n in images.shape[1:])
    console(config).say(
        f"exported {trained.arch} ({weights}) as {fmt}: {path}\n"
        f"  input: {'uint8 pixels' if with_preprocessing else 'normalized float32'} [batch, {channels}, "
        f"{height}, {width}] -> logits [batch, {dataset.num_classes}]; largest logit difference to the eager "
        f"model {difference:.2e} on {images.shape[0]} test images"
    )
    return ExportResult(
        path=path,
        format=fmt,
        arch=trained.arch,
        weights=Path(weights),
        run_dir=run_dir,
        data=data_key,
        with_preprocessing=with_preprocessing,
        input={
            "dtype": "uint8" if with_preprocessing else "float32",
            "shape": ["batch", channels, height, width],
        },
        mean=list(dataset.mean),
        std=list(dataset.std),
        num_classes=dataset.num_classes,
        checked_images=int(images.shape[0]),
        max_abs_difference=difference,
        tolerance=TOLERANCE,
        metadata=metadata,
    )


def file_metadata(
    arch: str, dataset: Dataset, data_key: str, weights: Path, run_dir: Path | None, raw: bool
) -> dict[str, str]:
    """What an exported file says about itself (ONNX metadata_props; the others' ``ekd.json``)."""
    return {
        "ekd_version": __version__,
        "arch": arch,
        "data": data_key,
        "num_classes": str(dataset.num_classes),
        "input": "uint8 pixels" if raw else "normalized float32",
        "mean": json.dumps([float(m) for m in dataset.mean]),
        "std": json.dumps([float(v) for v in dataset.std]),
        "source_weights": str(weights),
        "source_run": str(run_dir) if run_dir is not None else "",
    }


def _check_images(dataset: Dataset, count: int, raw: bool) -> torch.Tensor:
    """The first ``count`` test images: uint8 pixels (``raw``) or normalized as the engine feeds them."""
    import torch

    from ekdcli.sdk.contracts import InMemoryDataset
    from ekdcli.sdk.splits import normalize

    if isinstance(dataset, InMemoryDataset):
        pixels = dataset.test_images[:count]
        return pixels if raw else normalize(pixels, dataset.mean, dataset.std)
    if raw:
        raise UsageError(
            f"--with-preprocessing needs in-memory data (uint8 images); {dataset.name} is read from folders "
            "with its own transforms: export without it and normalize as its mean and std say."
        )
    split = dataset.split("test")
    return torch.stack([split[i][0] for i in range(min(count, len(split)))])  # type: ignore[arg-type]


def _export_checked(
    model: torch.nn.Module,
    arch: str,
    dataset: Dataset,
    images: torch.Tensor,
    fmt: str,
    path: Path,
    with_preprocessing: bool,
    metadata: dict[str, str],
) -> float:
    """Export to a temporary file, compare with the eager model, then rename into place."""
    from ekdcli.method import export
    from ekdcli.store.atomic import atomic_write

    model = model.float().eval().cpu()
    module = (
        export.WithPreprocessing(model, dataset.mean, dataset.std)
        if with_preprocessing
        else export.LogitsOnly(model)
    )
    found: dict[str, float] = {}

    def write(tmp: str) -> None:
        try:
            export.export(module, images[: min(2, images.shape[0])], fmt, tmp, metadata)
        except Exception as exc:
            raise UsageError(
                f"model {arch!r} cannot be exported as {fmt} ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:300]}); try another --format."
            ) from exc
        found["difference"] = export.max_difference(export.load(tmp, fmt), module, images)
        if not found["difference"] <= TOLERANCE:
            raise JobError(
                f"the {fmt} export of {arch!r} gives logits up to {found['difference']:.3g} away from the "
                f"eager model's (more than {TOLERANCE:g}); nothing was written: try another --format."
            )

    atomic_write(path, write)
    return found["difference"]

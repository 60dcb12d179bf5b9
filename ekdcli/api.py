"""The Python API: ekd's commands as functions that return results instead of printing them.

    import ekdcli as ekd

    teacher = ekd.train(model="resnet32", epochs=30)
    ekd.score(teacher="resnet32")
    run = ekd.distill(teacher="resnet32", student="resnet8", method="energy_kd", rate=0.2)
    student = ekd.load_model(run.run_dir)          # a torch.nn.Module in eval mode
    ekd.export(run.run_dir, format="onnx")

Each function runs the same job as its command (``ekd train`` runs :func:`train`'s job) on a
configuration made the same way: built-in defaults < ``config=FILE`` < the keyword arguments
(unlike the commands, a ``./ekd.toml`` is read only when named: ``config="ekd.toml"``), which are the keys of docs/configuration.md (``epochs=2``,
``limit_train=256``, ``energy={"preset": "official"}``, ``train={"momentum": 0.95}``).
Nothing is printed unless ``quiet=False``; run directories still get their ``run.log``.
Accuracies are fractions in [0, 1].  Bad input raises ``ekdcli.sdk.UsageError`` (one sentence).
docs/python-api.md walks through it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.config import Config, config_keys, resolve, validate
from ekdcli.sdk.energy import Thresholds as Thresholds
from ekdcli.sdk.energy import compute_thresholds, energy
from ekdcli.sdk.losses import energy_dkd_loss as energy_dkd_loss
from ekdcli.sdk.losses import energy_kd_loss as energy_kd_loss
from ekdcli.sdk.losses import energy_temperatures as energy_temperatures
from ekdcli.store import rundir
from ekdcli.store.layout import Store
from ekdcli.util.errors import UsageError, closest

# The drop-in losses for one's own training loop (docs/python-api.md), stable under these names.
energy_score = energy
energy_thresholds = compute_thresholds

if TYPE_CHECKING:
    import torch


# ------------------------------------------------------------------ results
@dataclass
class TrainRun:
    """What :func:`train` made: the weights in the store and the run directory."""

    model_path: Path
    run_dir: Path
    best_top1: float
    best_epoch: int
    last_top1: float
    metrics: list[dict[str, Any]] = field(repr=False)  # metrics.jsonl, one record per epoch

    @property
    def curves(self) -> Path:
        return self.run_dir / rundir.CURVES


@dataclass
class DistillRun:
    """What :func:`distill` made: the run directory with the student's weights."""

    run_dir: Path
    student: str
    teacher: str | None
    method: str
    augment: str | None
    data: str
    best_top1: float
    best_top5: float
    best_epoch: int
    last_top1: float
    last_top5: float
    objective: dict[str, Any] = field(repr=False)  # the loss as run: temperatures, thresholds, group sizes
    metrics: list[dict[str, Any]] = field(repr=False)

    @property
    def weights(self) -> Path:
        return self.run_dir / rundir.BEST

    @property
    def curves(self) -> Path:
        return self.run_dir / rundir.CURVES


@dataclass
class Scores:
    """What :func:`score` wrote: the score file, its histogram, and the energy summary."""

    path: Path
    histogram: Path
    computed: bool  # False: a matching score file was reused
    summary: dict[str, Any] = field(repr=False)


@dataclass
class Partition:
    """What :func:`partition` wrote: the index sets, their sizes and thresholds, and the figures."""

    path: Path
    counts: dict[str, int]
    thresholds: dict[str, Any] | None
    segment_edges: list[float] | None
    files: dict[str, Path]


@dataclass
class Evaluation:
    """What :func:`evaluate` measured: one entry per target, and the targets grouped by configuration.

    ``groups`` are configuration groups (the seeds of one setting, with mean ± std), also named
    ``configurations``; the accuracy on the training set's energy groups (the CLI's ``--groups``,
    here ``energy_groups=True``) is in each target's ``"energy_groups"``.
    """

    targets: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    split: str
    plot: Path | None = None

    @property
    def configurations(self) -> list[dict[str, Any]]:
        """The targets grouped by configuration (the same list as ``groups``)."""
        return self.groups

    def top1(self) -> dict[str, float]:
        """Test (or train) top-1 of each target, by the target as given."""
        return {t["target"]: t["top1"] for t in self.targets}


@dataclass
class Export:
    """What :func:`export` wrote: the file, what it takes, and how close it is to the eager model."""

    path: Path
    format: str
    arch: str
    with_preprocessing: bool
    input_shape: list[Any]  # ["batch", C, H, W]
    input_dtype: str  # "uint8" with the preprocessing folded in, else "float32" (normalized)
    max_abs_difference: float
    checked_images: int


# ------------------------------------------------------------------ configuration
def make_config(settings: dict[str, Any], config: str | Path | None = None) -> Config:
    """A :class:`Config` from keyword arguments (``None`` = not given), as the commands make one from
    flags; a project file is read only when named (``config="ekd.toml"``), so a script gives the same
    result in every directory."""
    given = {key: value for key, value in settings.items() if value is not None}
    given.setdefault("quiet", True)
    _refuse_unknown(given)
    validate(given, "keyword arguments")
    # the arguments count as flags: they win over the file and a run's data
    return resolve(given, config, project_file=False)


def _refuse_unknown(given: dict[str, Any]) -> None:
    """A misspelt keyword (``epoch=``) is named with the key it resembles."""
    known = config_keys()
    wrong = [key for key in given if key.replace("-", "_") not in known]
    if wrong:
        hints = [f"{key!r}{_hint(key, known)}" for key in wrong]
        raise UsageError(
            f"keyword arguments: unknown {'key' if len(wrong) == 1 else 'keys'} {', '.join(hints)}; see docs/configuration.md for the keys."
        )


def _hint(key: str, known: list[str]) -> str:
    hits = closest(key, known, n=1)
    return f" (did you mean {hits[0]!r}?)" if hits else ""


def _run_path(value: str | Path | None) -> Path | None:
    return Path(value) if value is not None else None


def _config_file(config: str | Path | None, resume: str | Path | None) -> str | Path | None:
    """Resuming reads the run's own config.toml (as ``--resume`` does) unless ``config`` names another."""
    if resume is not None and config is None and (Path(resume) / rundir.CONFIG).is_file():
        return Path(resume) / rundir.CONFIG
    return config


# ------------------------------------------------------------------ the commands
def load_model(
    name_or_path: str | Path,
    *,
    data: str | None = None,
    which: str = "best",
    device: str = "cpu",
    config: str | Path | None = None,
    **settings: Any,
) -> torch.nn.Module:
    """A trained model, in eval mode, on ``device`` (the analogue of ``from_pretrained``).

    ``name_or_path``: a model name in the store (``models/<data>/<name>.safetensors``; give
    ``data``), a ``.safetensors`` file, or a run directory / run name (its ``which`` weights).
    The weights' metadata says what to build; no data are loaded.
    """
    from ekdcli.engine.options import check_device
    from ekdcli.jobs.build import open_trained
    from ekdcli.jobs.targets import find_trained

    check_device(device)
    resolved = make_config({**settings, "data": data}, config)
    weights, _ = find_trained(str(name_or_path), resolved, which)
    return open_trained(weights).model.eval().to(device)


def train(
    model: str,
    *,
    name: str | None = None,
    keep: str | None = None,  # best, unless a resumed run was started with --keep last
    resume: str | Path | None = None,
    config: str | Path | None = None,
    **settings: Any,
) -> TrainRun:
    """``ekd train``: train ``model`` with cross-entropy; its weights go to the store (as ``name``)."""
    from ekdcli.jobs.train import run_train

    resolved = make_config({**settings, "model": model}, _config_file(config, resume))
    result = run_train(resolved, name=name, keep=keep, resume=_run_path(resume))
    summary = result.summary
    return TrainRun(
        model_path=result.model_path,
        run_dir=result.run_dir,
        best_top1=summary["best_top1"],
        best_epoch=summary["best_epoch"],
        last_top1=summary["last_top1"],
        metrics=rundir.read_metrics(result.run_dir),
    )


def score(
    teacher: str,
    *,
    rate: float = 0.2,
    force: bool = False,
    save_logits: bool | None = None,
    out: str | Path | None = None,
    config: str | Path | None = None,
    **settings: Any,
) -> Scores:
    """``ekd score``: the teacher's energy of every training sample (reused while it matches)."""
    from ekdcli.jobs.score import run_score

    resolved = make_config({**settings, "teacher": teacher}, config)
    result = run_score(resolved, _run_path(out), force, save_logits, rate)
    return Scores(result.scores, result.histogram, result.computed, result.summary)


def partition(
    teacher: str | None = None,
    *,
    scores: str | Path | None = None,
    segments: int | None = None,
    figures: bool = True,
    per_class: int = 6,
    classes: int = 4,
    config: str | Path | None = None,
    **settings: Any,
) -> Partition:
    """``ekd partition``: low / others / high energy sets (``rate=`` or ``low_rate=``/``high_rate=``),
    or ``segments`` equal-count segments, with the paper's figures."""
    from ekdcli.jobs.partition import run_partition

    resolved = make_config({**settings, "teacher": teacher}, config)
    result = run_partition(resolved, _run_path(scores), segments, per_class, classes, figures)
    files = {name: Path(path) for name, path in result.files.items()}
    return Partition(files["partition"], result.counts, result.thresholds, result.segment_edges, files)


def distill(
    teacher: str | torch.nn.Module | None = None,
    student: str | torch.nn.Module | None = None,
    *,
    train: Any = None,
    test: Any = None,
    class_names: list[str] | None = None,
    method: str | None = None,
    augment: str | None = None,
    rate: float | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int | None = None,
    device: str | None = None,
    resume: str | Path | None = None,
    config: str | Path | None = None,
    **settings: Any,
) -> DistillRun:
    """``ekd distill``: train ``student`` from ``teacher`` (``method=``, ``augment=``, ``rate=``, ...).

    Bring your own: ``teacher`` and ``student`` may be ``torch.nn.Module`` objects (the teacher
    trained, the student as it should start) and ``train``/``test`` a map-style Dataset of
    ``(image, label)`` (uint8, or floats in [0, 1] as torchvision's ``ToTensor`` gives) or a
    DataLoader over one; without ``test``, accuracy is measured on the training images. The
    student's weights are in the run directory; load them with ``student.load_state_dict``.
    """
    from ekdcli.jobs.distill import run_distill

    named = {"method": method, "augment": augment, "rate": rate, "epochs": epochs, "batch_size": batch_size}
    settings = {**settings, **named, "lr": lr, "seed": seed, "device": device}
    if train is not None or _is_module(teacher) or _is_module(student):
        settings.update(_bring_your_own(teacher, student, train, test, class_names, settings))
    else:
        settings.update({"teacher": teacher, "student": student})
    resolved = make_config(settings, _config_file(config, resume))
    result = run_distill(resolved, resume=_run_path(resume))
    names = [f.name for f in dataclasses.fields(DistillRun) if f.name != "metrics"]
    return DistillRun(metrics=rundir.read_metrics(result.run_dir), **{k: getattr(result, k) for k in names})


def _is_module(value: Any) -> bool:
    return not isinstance(value, (str, Path)) and value is not None and hasattr(value, "state_dict")


def _bring_your_own(
    teacher: Any, student: Any, train: Any, test: Any, class_names: list[str] | None, settings: dict[str, Any]
) -> dict[str, Any]:
    """Register the modules and the data (:mod:`ekdcli.jobs.byo`); the settings that name them."""
    from ekdcli.jobs import byo

    if train is None:
        raise UsageError("a teacher or student module needs its data: pass train=Dataset (and test=Dataset).")
    make_config({k: v for k, v in settings.items() if k not in ("data", "data_root")})  # typos first
    dataset = byo.python_dataset(train, test, class_names)
    out: dict[str, Any] = {"data": byo.register_dataset(dataset), "data_root": None}
    if _is_module(student):
        out["student"] = byo.register_module(student, "student", dataset)
    else:
        out["student"] = student
    if _is_module(teacher):
        arch = byo.register_module(teacher, "teacher", dataset)
        store = Store(make_config({"store": settings.get("store")}).store_root())
        out["teacher"] = str(byo.store_teacher(teacher, arch, dataset, store))
    else:
        out["teacher"] = teacher
    return out


def evaluate(
    *targets: str | Path,
    split: str = "test",
    which: str = "best",
    scores: str | Path | None = None,
    rate: float = 0.2,
    plot: str | Path | None = None,
    strict: bool = False,
    energy_groups: bool = False,
    config: str | Path | None = None,
    **settings: Any,
) -> Evaluation:
    """``ekd evaluate``: accuracy, calibration and energy-group accuracy of runs, stored models or
    weights files; ``plot=FILE`` also overlays the runs' training curves."""
    from ekdcli.jobs.evaluate import run_evaluate

    resolved = make_config(settings, config)
    refs = [str(target) for target in targets]
    drawn = None
    if plot is not None:
        from ekdcli.jobs.curves import plot_targets

        drawn = plot_targets(resolved, refs, Path(plot))
    result = run_evaluate(
        resolved, refs, split, _run_path(scores), which, rate, groups=energy_groups, strict=strict
    )
    return Evaluation(result.targets, result.groups, result.split, drawn)


def export(
    target: str | Path,
    format: str,
    *,
    with_preprocessing: bool = False,
    out: str | Path | None = None,
    force: bool = False,
    which: str = "best",
    check: int = 256,
    config: str | Path | None = None,
    **settings: Any,
) -> Export:
    """``ekd export``: a trained model as a TorchScript, ONNX or ``.pt2`` file, checked against the
    eager model on the first ``check`` test images."""
    from ekdcli.jobs.export import run_export

    resolved = make_config(settings, config)
    result = run_export(
        resolved,
        str(target),
        format,
        with_preprocessing=with_preprocessing,
        out=_run_path(out),
        force=force,
        which=which,
        check=check,
    )
    return Export(
        result.path,
        result.format,
        result.arch,
        result.with_preprocessing,
        result.input["shape"],
        result.input["dtype"],
        result.max_abs_difference,
        result.checked_images,
    )


__all__ = [
    "DistillRun",
    "Evaluation",
    "Export",
    "Partition",
    "Scores",
    "TrainRun",
    "distill",
    "evaluate",
    "export",
    "load_model",
    "make_config",
    "partition",
    "score",
    "train",
]

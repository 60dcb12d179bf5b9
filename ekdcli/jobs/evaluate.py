"""``ekd evaluate``: accuracy, calibration and energy-group accuracy of runs and trained models.

A TARGET is, in this order: a run directory (or a directory of runs), a run name under
``<store>/runs/``, a ``.safetensors`` weights file, or a model name in the store
(``<store>/models/<data>/<name>.safetensors``).  A run is evaluated on the data its
``config.toml`` names (``--data``/``--data-root`` flags override it) with its ``best`` or
``last`` weights.  Several targets are compared in one table, grouped by configuration
(the run's settings other than its seed, name and how it was run) with mean ± sample std.

Evaluation runs at fp32 unless ``--precision`` is given, so the accuracy of an imported
checkpoint equals the one its original code reports (bf16 autocast can flip a few argmaxes).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.config import Config
from ekdcli.jobs.common import console, engine_options, open_store
from ekdcli.jobs.evaluate_report import finite, group_results
from ekdcli.store import rundir
from ekdcli.store.layout import Store
from ekdcli.util.errors import UsageError

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover - exercised on Python 3.10 only
    pass

if TYPE_CHECKING:
    import torch

    from ekdcli.engine import Runtime
    from ekdcli.sdk.contracts import Dataset

SPLITS = ("test", "train")
# Settings of how a run was executed, not what it learned: runs differing only here are repeats.
NON_SEMANTIC = (
    "seed",
    "run_name",
    "quiet",
    "debug",
    "json",
    "store",
    "device",
    "precision",
    "channels_last",
    "compile",
    "deterministic",
    "teacher_cache",
    "data_root",
    "download",
    "track",
    "tracking_uri",
)
# Settings a run's config.toml decides for its evaluation unless given as flags now.
DATA_KEYS = ("data", "data_root", "data_options", "download")


@dataclass
class Target:
    """One thing to evaluate: a weights file, and the run it belongs to (if any)."""

    ref: str
    kind: str  # "run", "store" or "weights"
    weights: Path
    run_dir: Path | None = None
    run_values: dict[str, Any] = field(default_factory=dict)  # the run's config.toml


# ------------------------------------------------------------------ targets
def expand_targets(refs: list[str]) -> list[str]:
    """A directory holding run directories (e.g. ``<store>/runs``) stands for each of its runs."""
    out: list[str] = []
    for ref in refs:
        path = Path(ref).expanduser()
        if path.is_dir() and not rundir.is_run_dir(path):
            runs = sorted(p for p in path.iterdir() if p.is_dir() and rundir.is_run_dir(p))
            if runs:
                out.extend(str(p) for p in runs)
                continue
        out.append(ref)
    return out


def _store_run_dir(store: Store, ref: str) -> Path | None:
    try:
        path = store.run_dir(ref)
    except UsageError:  # not a possible run name
        return None
    return path if path.is_dir() else None


def resolve_target(ref: str, config: Config, which: str, store: Store, data_key: str | None) -> Target:
    """What ``ref`` names: a run directory, a run in the store, a weights file or a stored model."""
    path = Path(ref).expanduser()
    if path.is_dir():
        if not rundir.is_run_dir(path):
            raise UsageError(
                f"{path} is a directory but not a run directory (none of {', '.join(rundir.RUN_FILES)}); "
                "pass a run directory, a run name, a model name or a .safetensors file."
            )
        return Target(ref, "run", rundir.weights_path(path, which), path, rundir.read_config(path))
    if path.is_file():
        if path.suffix == ".safetensors":
            return Target(ref, "weights", path)
        if path.name in rundir.RUN_FILES:  # e.g. runs/*/summary.json
            return resolve_target(str(path.parent), config, which, store, data_key)
        raise UsageError(f"{path} is not a .safetensors weights file or a file of a run directory.")
    run_dir = _store_run_dir(store, ref)
    if run_dir is not None:
        return Target(ref, "run", rundir.weights_path(run_dir, which), run_dir, rundir.read_config(run_dir))
    if ref.endswith(".safetensors"):
        raise UsageError(f"the weights file {ref} does not exist; check the path.")
    from ekdcli.jobs.build import canonical_model, is_registered_model

    canonical = canonical_model(ref) if is_registered_model(ref) else None
    looked = [f"a directory {path}", f"a run {store.runs_dir() / ref}"]
    if data_key is not None:
        found = store.find_weights(ref, data_key, canonical)
        if found is not None:
            return Target(ref, "store", found)
        looked.append(f"a model {store.model_path(data_key, canonical or ref)}")
    raise UsageError(
        f"no target {ref!r}: looked for {', '.join(looked)}; pass a run directory, a run name, "
        "a model name in the store (with --data) or a .safetensors file."
    )


# ------------------------------------------------------------------ configuration
def eval_config(cli: Config, target: Target) -> Config:
    """The CLI's settings, with the data a run was trained on unless given as flags now."""
    if target.kind != "run":
        return cli
    changes = {
        key: target.run_values[key]
        for key in DATA_KEYS
        if key in target.run_values and cli.sources.get(key) != "flag"
    }
    if "data_options" in changes:
        changes["data_options"] = dict(changes["data_options"])
    return dataclasses.replace(cli, **changes)


def _canonical(kind: str, name: Any) -> Any:
    """Registered names in their canonical spelling (``wrn_40_2`` and ``wrn40_2`` group together)."""
    if not isinstance(name, str) or name.endswith(".safetensors"):
        return name
    from ekdcli.sdk.plugins import registry

    reg = registry(kind)
    return reg.get(name).name if name in reg else name


def configuration_key(values: dict[str, Any], made_by: str | None) -> str:
    """A run's configuration without its seed, name and execution settings (the grouping key)."""
    semantic = {k: v for k, v in values.items() if k not in NON_SEMANTIC}
    for key, kind in (("teacher", "models"), ("student", "models"), ("model", "models")):
        if key in semantic:
            semantic[key] = _canonical(kind, semantic[key])
    if "method" in semantic:
        semantic["method"] = _canonical("distillers", semantic["method"])
    if semantic.get("augment"):
        semantic["augment"] = _canonical("augmentations", semantic["augment"])
    if "data" in semantic:
        semantic["data"] = _canonical("datasets", semantic["data"])
    semantic["made_by"] = made_by
    return json.dumps(semantic, sort_keys=True, default=str)


def configuration_label(meta: dict[str, Any], values: dict[str, Any], arch: str) -> str:
    """``method[+augment] teacher->student`` for distillation runs, ``ce model`` for training runs."""
    made_by = meta.get("made_by") or ""
    if made_by == "ekd train" or (not made_by and values.get("model") and not values.get("teacher")):
        return f"ce {arch}"
    method = meta.get("method") or values.get("method") or "?"
    augment = meta.get("augment") or values.get("augment")
    teacher = meta.get("teacher") or values.get("teacher") or "?"
    return f"{method}{'+' + augment if augment else ''} {teacher}->{arch}"


# ------------------------------------------------------------------ run history
# ------------------------------------------------------------------ scores
def _teacher_labels(teacher: Any) -> list[str]:
    if not isinstance(teacher, str) or not teacher:
        return []
    if teacher.endswith(".safetensors"):
        return [Path(teacher).stem]
    return list(dict.fromkeys([teacher, _canonical("models", teacher)]))


def find_score_file(store: Store, data_key: str, teachers: list[Any]) -> tuple[Path | None, list[Path]]:
    """The store's score file of the first teacher that has one, and every path looked at."""
    looked: list[Path] = []
    for teacher in teachers:
        for label in _teacher_labels(teacher):
            path = store.score_path(data_key, label)
            if path not in looked:
                looked.append(path)
            if path.is_file():
                return path, looked
    return None, looked


# ------------------------------------------------------------------ evaluation
@dataclass
class _Caches:
    datasets: dict[str, Any] = field(default_factory=dict)
    scores: dict[Path, Any] = field(default_factory=dict)


def _dataset(config: Config, caches: _Caches) -> tuple[Dataset, str]:
    from ekdcli.jobs.build import dataset_key, load_dataset

    key = json.dumps(
        [config.data, config.data_root, config.data_options, config.download], sort_keys=True, default=str
    )
    if key not in caches.datasets:
        caches.datasets[key] = (load_dataset(config), dataset_key(config))
    return caches.datasets[key]


def _energy_groups(
    target: Target,
    config: Config,
    scores: Path | None,
    rate: float,
    dataset: Dataset,
    data_key: str,
    meta: dict[str, Any],
    train_logits: Any,
    caches: _Caches,
) -> dict[str, Any]:
    """Accuracy on the low / others / high energy sets of the training data (or why there is none)."""
    from ekdcli.method.scoring import load_scores

    say = console(config)
    explicit = scores is not None
    if scores is None:
        teachers = [target.run_values.get("teacher"), meta.get("teacher")] if target.kind == "run" else []
        teachers.append(config.teacher)
        scores, looked = find_score_file(open_store(config), data_key, teachers)
        if scores is None:
            where = ", ".join(str(p) for p in looked) or "(no teacher known)"
            return {"available": False, "reason": f"no score file (looked at {where}); pass --scores FILE"}
    if scores not in caches.scores:
        caches.scores[scores] = load_scores(scores)
    table = caches.scores[scores]
    if table.meta.dataset_fingerprint != dataset.fingerprint("train"):
        reason = (
            f"{scores} scores another training set ({table.meta.dataset_fingerprint}) than "
            f"{data_key} ({dataset.fingerprint('train')})"
        )
        if explicit:
            raise UsageError(f"{reason}; pass the score file of this data.")
        say.warn(f"{reason}: energy groups skipped.")
        return {"available": False, "reason": reason}
    low_rule = str(
        target.run_values.get("energy", {}).get("low_rule") or config.energy.get("low_rule", "released")
    )
    return _group_accuracy(table, scores, rate, low_rule, train_logits)


def _group_accuracy(
    table: Any, scores: Path, rate: float, low_rule: str, train_logits: Any
) -> dict[str, Any]:
    """Student and teacher accuracy on the low / others / high sets of the scores at ``rate``."""
    from ekdcli.method.metrics import index_group_accuracy
    from ekdcli.method.partition import make_partition

    part = make_partition(table.energies, rate, rate, low_rule, table.fingerprint)
    logits, labels = train_logits()
    groups = {g: part.group(g) for g in ("low", "others", "high")}
    student = index_group_accuracy(logits, labels, groups)
    teacher_correct = (table.predictions == table.labels).double()
    result: dict[str, Any] = {
        "available": True,
        "scores": str(scores),
        "teacher": table.meta.teacher,
        "rate": rate,
        "low_rule": low_rule,
        "thresholds": part.thresholds.as_dict() if part.thresholds is not None else None,
        "groups": {},
    }
    for name, index in groups.items():
        count = int(index.numel())
        result["groups"][name] = {
            **student[name],
            "teacher_accuracy": float(teacher_correct[index].mean()) if count else None,
        }
    return result


class _Predictions:
    """A model's logits and labels per split, computed once (the test split within --limit-test;
    the training split whole, since energy sets need every sample)."""

    def __init__(
        self, model: torch.nn.Module, dataset: Dataset, runtime: Runtime, limit_test: int | None
    ) -> None:
        self.model, self.dataset, self.runtime, self.limit_test = model, dataset, runtime, limit_test
        self.done: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        from ekdcli.engine import predict

        if split not in self.done:
            limit = self.limit_test if split == "test" else None
            self.done[split] = predict(self.model, self.dataset, split, self.runtime, limit=limit)
        return self.done[split]


def evaluate_target(
    target: Target,
    cli: Config,
    split: str,
    scores: Path | None,
    rate: float,
    runtime: Runtime,
    caches: _Caches,
) -> dict[str, Any]:
    """All metrics of one target (JSON-ready)."""
    from ekdcli.jobs.build import load_trained
    from ekdcli.method.metrics import classification_metrics, long_tail_accuracy
    from ekdcli.store.weights import meta_value, read_metadata

    config = eval_config(cli, target)
    say = console(cli)
    dataset, data_key = _dataset(config, caches)
    raw_meta = read_metadata(target.weights)
    meta = {k: meta_value(raw_meta, k) for k in raw_meta}
    recorded = meta.get("dataset")
    if isinstance(recorded, str) and recorded and recorded != data_key:
        say.warn(f"{target.weights} was made on data {recorded!r}; evaluating it on {data_key!r}.")
    trained = load_trained(str(target.weights), dataset, data_key, open_store(config), "model")
    source = {"run": f", its {target.weights.stem} weights", "store": f", {target.weights}"}.get(
        target.kind, ""
    )
    say.say(f"evaluating {target.ref} ({trained.arch}{source}) on {data_key} {split}")

    logits_of = _Predictions(trained.model, dataset, runtime, config.limit_test)
    logits, labels = logits_of(split)
    run_dir = _made_in(target, meta)
    metrics = classification_metrics(logits, labels)
    counts = dataset.info.get("class_counts")
    result: dict[str, Any] = {
        "target": target.ref,
        "kind": target.kind,
        "run_dir": str(run_dir) if run_dir is not None else None,
        "weights": str(target.weights),
        "which": target.weights.stem if target.kind == "run" else None,
        "arch": trained.arch,
        "data": data_key,
        "split": split,
        "precision": runtime.precision,
        **metrics,
        "class_names": list(dataset.class_names),
        "long_tail": long_tail_accuracy(logits, labels, counts) if counts else None,
        "energy_groups": _energy_groups(
            target, config, scores, rate, dataset, data_key, meta, lambda: logits_of("train"), caches
        ),
        "run": rundir.history(run_dir) if run_dir is not None else None,
        "made_by": meta.get("made_by"),
    }
    result.update(_grouping(target, meta, trained.arch))
    return result


def _made_in(target: Target, meta: dict[str, Any]) -> Path | None:
    """The run a target belongs to; weights that `ekd train` put in the store name theirs."""
    made_in = meta.get("run_dir")
    if target.run_dir is None and isinstance(made_in, str) and rundir.is_run_dir(Path(made_in)):
        return Path(made_in)
    return target.run_dir


def _grouping(target: Target, meta: dict[str, Any], arch: str) -> dict[str, str]:
    """The label a target is shown under and the configuration key its repeats share."""
    if target.kind == "run":
        return {
            "label": configuration_label(meta, target.run_values, arch),
            "configuration": configuration_key(target.run_values, meta.get("made_by")),
        }
    return {
        "label": f"{target.ref} ({arch})",
        "configuration": json.dumps({"weights": str(target.weights.resolve())}),
    }


# ------------------------------------------------------------------ the job
def run_evaluate(
    config: Config, targets: list[str], split: str, scores: Path | None, which: str, rate: float = 0.2
) -> dict[str, Any]:
    """Evaluate each target; return ``{"targets": [...], "groups": [...]}`` (see the module docstring)."""
    from ekdcli.engine import Runtime
    from ekdcli.jobs.build import dataset_key

    if not targets:
        raise UsageError(
            "give at least one TARGET: a run directory, a run name, a model name or a .safetensors file."
        )
    if split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}.")
    if which not in rundir.WHICH:
        raise UsageError(f"--which must be one of {', '.join(rundir.WHICH)}, not {which!r}.")
    if not (finite(rate) and 0 < rate <= 0.5):
        raise UsageError(
            f"--rate must be in (0, 0.5] (the share of the low and of the high set), not {rate}."
        )
    if scores is not None and not Path(scores).is_file():
        raise UsageError(f"no score file at {scores}; create it with 'ekd score --teacher TEACHER'.")
    store = open_store(config)
    data_key = dataset_key(config)
    resolved = [resolve_target(ref, config, which, store, data_key) for ref in expand_targets(list(targets))]
    options = engine_options(config)
    if config.sources.get("precision", "default") == "default" and config.precision == "auto":
        options.precision = "fp32"
    runtime = Runtime(options)
    caches = _Caches()
    results = [evaluate_target(t, config, split, scores, rate, runtime, caches) for t in resolved]
    return _json_safe({"split": split, "which": which, "targets": results, "groups": group_results(results)})


def _json_safe(value: Any) -> Any:
    """NaN and infinities become ``None`` so the result stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value

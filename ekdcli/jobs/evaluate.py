"""``ekd evaluate``: accuracy, calibration and energy-group accuracy of runs and trained models.

A TARGET is, in this order: a run directory (or a directory of runs), a run name under
``<store>/runs/``, a ``.safetensors`` weights file, or a model name in the store
(``<store>/models/<data>/<name>.safetensors``).  A run is evaluated on the data its
``config.toml`` names (``--data``/``--data-root`` flags override it) with its ``best`` or
``last`` weights.  Several targets are compared in one table, grouped by configuration
(the run's settings other than its seed, name and how it was run) with mean ± sample std.

Evaluation runs at fp32 unless ``--precision`` is given, so the accuracy of an imported
checkpoint equals the one its original code reports (bf16 autocast can flip a few argmaxes).

It is bounded: one pass over the test split per target; the training set's energy groups only when
asked (``--groups``, on the first ``--limit-train`` images or all). What the passes give is cached
per (weights, data, options) in the store (``evaluate_cache.py``), so a second evaluation is free.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.config import Config
from ekdcli.jobs.common import console, engine_options, open_store
from ekdcli.jobs.evaluate_cache import EvaluationCache, evaluation_key
from ekdcli.jobs.evaluate_report import RowPrinter, display_names, group_results
from ekdcli.jobs.targets import Target, resolve_all, with_run_data
from ekdcli.sdk.options import both_sides_rate
from ekdcli.store import rundir
from ekdcli.store.layout import Store
from ekdcli.util.errors import UsageError

if TYPE_CHECKING:
    from ekdcli.engine import Runtime
    from ekdcli.sdk.contracts import Dataset

SPLITS = ("test", "train")
# Settings of how a run was executed, not what it learned: runs differing only here are repeats.
NON_SEMANTIC = (
    "seed",
    "run_name",
    "quiet",
    "verbose",
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


# ------------------------------------------------------------------ configuration
def eval_config(cli: Config, target: Target) -> Config:
    """The CLI's settings, with the data a run was trained on unless given as flags now."""
    return with_run_data(cli, target.run_values if target.kind == "run" else None)


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
class GroupOptions:
    """The per-energy-group columns: asked for (``--groups`` or ``--scores``), at which rate, from
    which score file, on the first ``limit`` training images (all: None)."""

    enabled: bool = False
    rate: float = 0.2
    scores: Path | None = None
    limit: int | None = None


@dataclass
class _Caches:
    results: EvaluationCache  # measured results on disk
    datasets: dict[str, Any] = field(default_factory=dict)
    scores: dict[Path, Any] = field(default_factory=dict)
    reused: int = 0  # targets evaluated without a forward pass


def _dataset(config: Config, caches: _Caches) -> tuple[Dataset, str]:
    from ekdcli.jobs.build import dataset_key, load_dataset

    key = json.dumps(
        [config.data, config.data_root, config.data_options, config.download], sort_keys=True, default=str
    )
    if key not in caches.datasets:
        caches.datasets[key] = (load_dataset(config), dataset_key(config))
    return caches.datasets[key]


def _score_table(
    target: Target, config: Config, options: GroupOptions, dataset: Dataset, data_key: str,
    meta: dict[str, Any], caches: _Caches,
) -> tuple[Any, Path | None, str | None]:  # fmt: skip
    """The score file for the energy groups: ``(table, path, None)``, or ``(None, None, why not)``."""
    from ekdcli.method.scoring import load_scores

    scores = options.scores
    if scores is None:
        teachers = [target.run_values.get("teacher"), meta.get("teacher")] if target.kind == "run" else []
        teachers.append(config.teacher)
        scores, looked = find_score_file(open_store(config), data_key, teachers)
        if scores is None:
            where = ", ".join(str(p) for p in looked) or "(no teacher known)"
            return None, None, f"no score file (looked at {where}); pass --scores FILE"
    if scores not in caches.scores:
        caches.scores[scores] = load_scores(scores)
    table = caches.scores[scores]
    if table.meta.dataset_fingerprint != dataset.fingerprint("train"):
        reason = (
            f"{scores} scores another training set ({table.meta.dataset_fingerprint}) than "
            f"{data_key} ({dataset.fingerprint('train')})"
        )
        if options.scores is not None:
            raise UsageError(f"{reason}; pass the score file of this data.")
        console(config).warn(f"{reason}: energy groups skipped.")
        return None, None, reason
    return table, scores, None


def _group_accuracy(
    table: Any, scores: Path, options: GroupOptions, low_rule: str, train_logits: Any
) -> dict[str, Any]:
    """Student and teacher accuracy on the low / others / high sets of the scores at the rate, on the
    first ``options.limit`` training images (the sets are those of every sample the file holds)."""
    from ekdcli.method.metrics import index_group_accuracy
    from ekdcli.method.partition import make_partition

    part = make_partition(table.energies, options.rate, options.rate, low_rule, table.fingerprint)
    rows = min(options.limit or table.n, table.n)
    logits, labels = train_logits(rows)
    groups = {g: (index := part.group(g))[index < rows] for g in ("low", "others", "high")}
    student = index_group_accuracy(logits, labels, groups)
    teacher_correct = (table.predictions == table.labels).double()
    result: dict[str, Any] = {
        "available": True,
        "requested": True,
        "scores": str(scores),
        "teacher": table.meta.teacher,
        "rate": options.rate,
        "low_rule": low_rule,
        "samples": rows,
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


def _weights_meta(path: Path) -> dict[str, Any]:
    from ekdcli.store.weights import meta_value, read_metadata

    raw = read_metadata(path)
    return {k: meta_value(raw, k) for k in raw}


def evaluate_target(
    target: Target,
    cli: Config,
    split: str,
    options: GroupOptions,
    runtime: Runtime,
    caches: _Caches,
) -> dict[str, Any]:
    """All metrics of one target (JSON-ready); the forward passes' results come from the
    evaluation cache when this weights file was measured on the same data with the same options."""
    config = eval_config(cli, target)
    dataset, data_key = _dataset(config, caches)
    meta = _weights_meta(target.weights)
    recorded = meta.get("dataset")
    if isinstance(recorded, str) and recorded and recorded != data_key:
        console(cli).warn(f"{target.weights} was made on data {recorded!r}; evaluating it on {data_key!r}.")
    measured = _measure(target, config, split, options, dataset, data_key, meta, runtime, caches)
    run_dir = _made_in(target, meta)
    result: dict[str, Any] = {
        "target": target.ref,
        "kind": target.kind,
        "run_dir": str(run_dir) if run_dir is not None else None,
        "weights": str(target.weights),
        "which": target.weights.stem if target.kind == "run" else None,
        "data": data_key,
        "split": split,
        "precision": runtime.precision,
        **measured,
        "class_names": list(dataset.class_names),
        "run": rundir.history(run_dir) if run_dir is not None else None,
        "made_by": meta.get("made_by"),
    }
    result.update(_grouping(target, meta, measured["arch"]))
    return result


class _Model:
    """The target's model, loaded on first use (not at all when the cache has every number)."""

    def __init__(self, target: Target, config: Config, dataset: Dataset, data_key: str) -> None:
        self.target, self.config, self.dataset, self.data_key = target, config, dataset, data_key
        self.trained: Any = None

    def __call__(self) -> Any:
        from ekdcli.jobs.build import load_trained

        if self.trained is None:
            store = open_store(self.config)
            self.trained = load_trained(str(self.target.weights), self.dataset, self.data_key, store, "model")
        return self.trained


def _measure(
    target: Target, config: Config, split: str, options: GroupOptions, dataset: Dataset, data_key: str,
    meta: dict[str, Any], runtime: Runtime, caches: _Caches,
) -> dict[str, Any]:  # fmt: skip
    """What the forward passes give: the split's metrics, and the energy groups' accuracy when
    asked; each from the evaluation cache when it has it, else measured and cached."""
    model = _Model(target, config, dataset, data_key)
    measured = _split_metrics(target, config, split, dataset, data_key, runtime, caches, model)
    table, scores = None, None
    reason: str | None = "not computed (add --groups for the training set's energy groups)"
    if options.enabled:
        table, scores, reason = _score_table(target, config, options, dataset, data_key, meta, caches)
    measured["energy_groups"] = {"available": False, "requested": options.enabled, "reason": reason}
    if table is not None and scores is not None:
        low_rule = str(
            target.run_values.get("energy", {}).get("low_rule") or config.energy.get("low_rule", "released")
        )
        asked = {
            "scores": table.fingerprint,
            "rate": options.rate,
            "low_rule": low_rule,
            "limit": options.limit,
        }
        key = evaluation_key(target.weights, dataset, data_key, "train", options.limit, runtime, asked)
        groups = caches.results.get(key)
        if groups is None:
            from ekdcli.engine import predict

            name = Path(target.ref).name or target.ref

            def train_logits(rows: int) -> Any:
                return predict(model().model, dataset, "train", runtime, limit=rows, desc=f"{name} train")

            groups = _group_accuracy(table, scores, options, low_rule, train_logits)
            caches.results.put(key, groups)
        measured["energy_groups"] = groups
    if model.trained is None:
        caches.reused += 1
    return measured


def _split_metrics(
    target: Target, config: Config, split: str, dataset: Dataset, data_key: str, runtime: Runtime,
    caches: _Caches, model: _Model,
) -> dict[str, Any]:  # fmt: skip
    """Top-1/top-5, NLL, ECE, per-class and long-tail accuracy of the target on ``split``."""
    from ekdcli.engine import predict
    from ekdcli.method.metrics import classification_metrics, long_tail_accuracy

    limit = config.limit_test if split == "test" else config.limit_train
    key = evaluation_key(target.weights, dataset, data_key, split, limit, runtime, None)
    cached = caches.results.get(key)
    if cached is not None:
        return cached
    name = Path(target.ref).name or target.ref
    trained = model()
    logits, labels = predict(trained.model, dataset, split, runtime, limit=limit, desc=f"{name} {split}")
    counts = dataset.info.get("class_counts")
    measured: dict[str, Any] = {
        "arch": trained.arch,
        **classification_metrics(logits, labels),
        "long_tail": long_tail_accuracy(logits, labels, counts) if counts else None,
    }
    caches.results.put(key, measured)
    return measured


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
def _check_options(targets: list[str], split: str, which: str, groups: GroupOptions) -> None:
    if not targets:
        raise UsageError(
            "give at least one TARGET: a run directory, a run name, a model name or a .safetensors file."
        )
    if split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}.")
    if which not in rundir.WHICH:
        raise UsageError(f"--which must be one of {', '.join(rundir.WHICH)}, not {which!r}.")
    both_sides_rate("", "--rate", groups.rate)  # the share of the low and of the high set
    if groups.scores is not None and not Path(groups.scores).is_file():
        raise UsageError(f"no score file at {groups.scores}; create it with 'ekd score --teacher TEACHER'.")


@dataclass
class EvaluateResult:
    """What ``ekd evaluate`` measured: the ``split`` and the weights (``which``) evaluated, whether
    the energy groups were measured (``energy_groups``), one row per target (``targets``) and the
    targets grouped by configuration (``groups``; both with NaN as None), the targets asked for
    (``requested``), the runs skipped for want of weights, whether Ctrl-C stopped it early
    (``interrupted``) and how many rows came from the evaluation cache (``cached``)."""

    split: str
    which: str
    energy_groups: bool
    targets: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    requested: int
    skipped: list[str]
    interrupted: bool
    cached: int

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` result."""
        return dataclasses.asdict(self)


def run_evaluate(
    config: Config,
    targets: list[str],
    split: str,
    scores: Path | None,
    which: str,
    rate: float = 0.2,
    *,
    groups: bool = False,
    stream: bool = False,
    cache: bool = True,
    strict: bool = False,
) -> EvaluateResult:
    """Evaluate each target; return its rows and their configuration groups (see the module docstring).

    A run without weights among several targets is skipped with a note (``"skipped"``) unless
    ``strict``.

    ``groups`` (implied by ``scores``) adds the accuracy on the training set's energy groups (on the
    first ``config.limit_train`` images, or all); ``stream`` prints each target's row as it is done;
    ``cache`` reads and writes the evaluation cache. Ctrl-C stops after the targets already done,
    which are returned with ``"interrupted": true``.
    """
    from ekdcli.jobs.build import dataset_key

    options = GroupOptions(groups or scores is not None, rate, scores, config.limit_train)
    _check_options(targets, split, which, options)
    store = open_store(config)
    data_key = dataset_key(config)
    resolved, skipped = resolve_all(list(targets), store, which, data_key, strict)
    if skipped:
        console(config).say(
            f"note: skipped {len(skipped)} run(s) without weights: {', '.join(skipped)} (--strict refuses them)"
        )
    from ekdcli.engine import Runtime  # after the names and paths are checked

    engine = engine_options(config)
    if config.sources.get("precision", "default") == "default" and config.precision == "auto":
        engine.precision = "fp32"
    runtime = Runtime(engine)
    caches = _Caches(results=EvaluationCache(store, enabled=cache))
    results, interrupted = _evaluate_all(resolved, config, split, options, runtime, caches, stream)
    return EvaluateResult(
        split=split,
        which=which,
        energy_groups=options.enabled,
        targets=_json_safe(results),
        groups=_json_safe(group_results(results)),
        requested=len(resolved),
        skipped=skipped,
        interrupted=interrupted,
        cached=caches.reused,
    )


def _evaluate_all(
    resolved: list[Target], config: Config, split: str, options: GroupOptions, runtime: Runtime,
    caches: _Caches, stream: bool,
) -> tuple[list[dict[str, Any]], bool]:  # fmt: skip
    """Each target in turn, its row printed when ``stream``; Ctrl-C keeps what is done."""
    stubs = [{"target": t.ref, "kind": t.kind, "run_dir": t.run_dir and str(t.run_dir)} for t in resolved]
    names, folder = display_names(stubs)
    show = stream and len(resolved) > 1
    from ekdcli.jobs.build import dataset_key

    datas = [dataset_key(eval_config(config, t)) for t in resolved]
    printer = RowPrinter(names, folder, options.enabled, console(config).say, datas) if show else None
    results: list[dict[str, Any]] = []
    try:
        for target, name in zip(resolved, names, strict=True):
            results.append(evaluate_target(target, config, split, options, runtime, caches))
            if printer is not None:
                printer.row(_json_safe(results[-1]), name)
    except KeyboardInterrupt:
        console(config).warn(f"interrupted: keeping the {len(results)} of {len(resolved)} targets evaluated.")
        return results, True
    return results, False


def _json_safe(value: Any) -> Any:
    """NaN and infinities become ``None`` so the result stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value

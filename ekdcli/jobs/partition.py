"""``ekd partition``: low / others / high energy sets (or N segments) of a score file, with figures."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.config import Config
from ekdcli.jobs.build import dataset_key, load_dataset
from ekdcli.jobs.common import console, open_store
from ekdcli.sdk.options import both_sides_rate
from ekdcli.sdk.options import partition_rates as sdk_partition_rates
from ekdcli.util.errors import UsageError

if TYPE_CHECKING:
    from ekdcli.method.partition import Partition
    from ekdcli.method.scoring import ScoreTable
    from ekdcli.sdk.contracts import Dataset


def _load_scores_for(config: Config, scores: Path | None, data_key: str) -> tuple[ScoreTable, Path]:
    from ekdcli.method.scoring import load_scores

    if scores is not None:
        return load_scores(scores), scores
    if not config.teacher:
        raise UsageError("say whose scores to partition with --teacher (or give the file with --scores).")
    store = open_store(config)
    label = Path(config.teacher).stem if config.teacher.endswith(".safetensors") else config.teacher
    candidates = [store.score_path(data_key, label)]
    from ekdcli.sdk.plugins import registry

    if config.teacher in registry("models"):
        candidates.append(store.score_path(data_key, registry("models").get(config.teacher).name))
    for path in candidates:
        if path.is_file():
            return load_scores(path), path
    # the hint names the dataset as the user types it (--data), not the store's key
    return load_scores(candidates[-1], teacher=config.teacher, data=config.data), candidates[-1]


def partition_rates(config: Config) -> tuple[float, float]:
    low = config.low_rate if config.low_rate is not None else config.rate
    high = config.high_rate if config.high_rate is not None else config.rate
    if low is None or high is None:
        raise UsageError("give --rate r (or both --low-rate and --high-rate), or --segments N.")
    # the rule of every partition (sdk/options.py): --rate r is both the low and the high share
    if config.low_rate is None and config.high_rate is None:
        both_sides_rate("", "--rate", low)
    return sdk_partition_rates("", low, high, ("--low-rate", "--high-rate"))


@dataclass
class PartitionResult:
    """What ``ekd partition`` made: the group sizes, the thresholds (or segment edges), the score
    file's fingerprint and the files written (``partition``, the figures) by role."""

    counts: dict[str, int]
    thresholds: dict[str, Any] | None
    segment_edges: list[float] | None
    score_fingerprint: str
    files: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` result."""
        return dataclasses.asdict(self)


def run_partition(
    config: Config, scores: Path | None, segments: int | None, per_class: int, classes: int, figures: bool
) -> PartitionResult:
    from ekdcli.method.partition import check_segments, format_partition, save_partition

    say = console(config)
    if per_class < 1:  # the figure's option, refused before the partition file is rewritten
        raise UsageError(f"--per-class must be at least 1 (images per row in the figure), not {per_class}.")
    if classes < 1:
        raise UsageError(f"--classes must be at least 1 (rows in the figure), not {classes}.")
    if segments is not None:
        check_segments(segments)  # the bound, before the score file is read
    else:
        partition_rates(config)  # the rates' rule, before the score file is read
    data_key = dataset_key(config)
    table, score_path = _load_scores_for(config, scores, data_key)
    if table.meta.dataset and table.meta.dataset != data_key and scores is None:
        raise UsageError(f"{score_path} scores data {table.meta.dataset!r}, not {data_key!r}.")
    if config.limit_train is not None:  # the sets of the first N training images (docs/method.md#scoring)
        table = table.first(config.limit_train)
    part, label = _partition(config, table, segments)
    dataset = _dataset_of_scores(config, table, score_path, figures, say)
    lt = dataset is not None and "class_counts" in dataset.info
    out = score_path.with_name(f"{score_path.stem}.partition-{label}.safetensors")
    save_partition(out, part, {"scores": str(score_path), "teacher": table.meta.teacher, "dataset": data_key})
    class_names = dataset.class_names if dataset is not None else None
    say.say(f"ekd partition: {score_path} ({table.meta.teacher} on {table.meta.dataset})")
    say.say(format_partition(part, table.labels if lt else None, class_names))
    written = {"partition": str(out)}
    if figures and dataset is not None:
        written.update(
            _figures(config, table, part, dataset, out.with_name(f"{out.stem}.png"), per_class, classes)
        )
    for name, path in written.items():
        say.say(f"{name}: {path}")
    return PartitionResult(
        counts={g: int(part.group(g).numel()) for g in ("low", "others", "high")},
        thresholds=part.thresholds.as_dict() if part.thresholds is not None else None,
        segment_edges=part.segment_edges.tolist() if part.segment_edges is not None else None,
        score_fingerprint=table.meta.fingerprint,
        files=written,
    )


def _partition(config: Config, table: ScoreTable, segments: int | None) -> tuple[Partition, str]:
    """The partition (or segments) and the label its files are named by."""
    from ekdcli.method.partition import make_partition, make_segments

    if segments is not None:
        return make_segments(table.energies, segments, table.meta.fingerprint), f"seg{segments}"
    low_rate, high_rate = partition_rates(config)  # make_partition checks their ranges
    low_rule = str(config.energy.get("low_rule", "released"))
    part = make_partition(table.energies, low_rate, high_rate, low_rule, table.meta.fingerprint)
    return part, f"low{low_rate:g}-high{high_rate:g}"


def _figures(
    config: Config,
    table: ScoreTable,
    part: Partition,
    dataset: Dataset,
    base: Path,
    per_class: int,
    classes: int,
) -> dict[str, str]:
    """The paper's Figure 3 grid (certain / uncertain images per class) and Figure 4 (average
    teacher prediction per group), named after ``base`` (``<partition>.png``)."""
    from ekdcli.method.figures import average_prediction_plot, certain_uncertain_grid, pick_classes

    written: dict[str, str] = {}
    chosen = pick_classes(table.labels, num=classes, seed=config.seed)
    images = getattr(dataset, "train_images", None)
    if images is not None:
        images = images[: table.n]  # a score file of the first N training images
        grid = base.with_name(base.name.replace(".png", ".certain-uncertain.png"))
        certain_uncertain_grid(
            images, table.labels, table.energies, dataset.class_names, chosen, per_class, grid
        )
        written["grid"] = str(grid)
    if table.logits is None:
        console(config).say(
            "(no logits in the score file: re-run 'ekd score --save-logits' for the average-prediction plot)"
        )
        return written
    plot = base.with_name(base.name.replace(".png", ".average-prediction.png"))
    probs = table.logits.float().softmax(dim=1)
    low, high = part.mask("low"), part.mask("high")
    average_prediction_plot(probs, table.labels, low, high, chosen, plot, class_names=dataset.class_names)
    written["average_prediction"] = str(plot)
    return written


def _dataset_of_scores(
    config: Config, table: ScoreTable, score_path: Path, figures: bool, say: Any
) -> Dataset | None:
    """The training set the scores describe (for figures and per-class counts), or None.

    A dataset named on purpose (``--data``, a config file) that is not the scored one is refused,
    both fingerprints shown; the built-in default dataset is only skipped, said out loud.
    """
    try:
        dataset = load_dataset(config)
    except UsageError as exc:
        if figures:
            say.warn(f"figures skipped: {exc.message}")
        return None
    found = dataset.fingerprint("train")
    if found == table.meta.dataset_fingerprint:
        return dataset
    if config.sources.get("data", "default") != "default":
        raise UsageError(
            f"{score_path} was scored on another dataset: its fingerprint is "
            f"{table.meta.dataset_fingerprint} ({table.meta.dataset or 'unnamed'}), the training set of "
            f"--data {config.data} has {found}; pass the score file of this dataset or re-run "
            f"`ekd score --teacher {table.meta.teacher or 'TEACHER'} --data {config.data}`."
        )
    if figures:
        say.warn(
            f"figures skipped: {score_path} scores {table.meta.dataset or 'another dataset'}, not the "
            f"default {config.data}; name its dataset with --data to draw them."
        )
    return None

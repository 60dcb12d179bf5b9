"""``ekd score``: teacher energies of the training set (computed once, then reused while they match)."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.config import Config
from ekdcli.jobs.build import TrainedModel, dataset_key, load_dataset, load_trained, stored_weights_path
from ekdcli.jobs.common import check_output, console, engine_options, open_store, store_file_lock
from ekdcli.jobs.provenance import say_teacher
from ekdcli.sdk.options import both_sides_rate
from ekdcli.util.errors import JobError, UsageError

# How long a second process waits for the one scoring the same teacher (then reuses its file).
_SCORE_WAIT_S = 3600.0

if TYPE_CHECKING:
    from ekdcli.method.scoring import ScoreTable
    from ekdcli.sdk.contracts import Dataset


@dataclass
class Scored:
    table: ScoreTable  # the samples asked for: the first --limit-train rows of the file, or all
    path: Path
    computed: bool
    file_rows: int  # samples the file holds (more than the table's when a larger file is reused)


def teacher_label(teacher: TrainedModel) -> str:
    """The name a teacher's scores are stored under: its weights file's name."""
    return teacher.path.stem


def score_limit(config: Config, dataset: Dataset) -> int | None:
    """The training samples a run uses: the first ``--limit-train`` ones; None for all of them."""
    total = len(dataset.labels("train"))
    limit = config.limit_train
    return limit if limit is not None and limit < total else None


def ensure_scores(
    config: Config,
    dataset: Dataset,
    data_key: str,
    teacher: TrainedModel,
    *,
    out: Path | None = None,
    force: bool = False,
    save_logits: bool | None = None,
) -> Scored:
    """The teacher's scores of the training samples the run uses (the first ``--limit-train``, or
    all): the stored score file when it matches the teacher and data and holds those samples (its
    first rows), else a scoring pass whose file replaces one that held fewer samples.

    Rank 0 holds the score file's lock meanwhile: a second process scoring the same teacher waits,
    then reuses the file.
    """
    from ekdcli.engine.ddp import from_rank0

    path = out or open_store(config).score_path(data_key, teacher_label(teacher))
    lock = store_file_lock(path, wait=_SCORE_WAIT_S)
    lock.on_wait = lambda holder: console(config).say(f"waiting for {holder}, which is scoring into {path}")
    with contextlib.ExitStack() as held:

        def take() -> None:
            held.enter_context(lock)

        from_rank0(take)
        return _scores(config, dataset, data_key, teacher, path, force, save_logits)


def _scores(
    config: Config,
    dataset: Dataset,
    data_key: str,
    teacher: TrainedModel,
    path: Path,
    force: bool,
    save_logits: bool | None,
) -> Scored:
    from ekdcli.engine.ddp import is_main
    from ekdcli.method.scoring import check_compatible, load_scores, save_scores
    from ekdcli.store.weights import weights_sha256

    sha = weights_sha256(teacher.path)
    fingerprint = dataset.fingerprint("train")
    limit = score_limit(config, dataset)
    if path.is_file() and not force:
        table = load_scores(path, teacher=teacher_label(teacher), data=config.data)
        check_compatible(table, sha, fingerprint, config.energy_temperature, data=config.data)
        # --save-logits asks for what a reused file lacks: score again rather than ignore the flag
        if table.covers(limit) and not (save_logits and table.logits is None):
            return Scored(table=table.first(limit), path=path, computed=False, file_rows=table.n)
        if not table.covers(limit):
            wanted = f"the first {limit:,}" if limit is not None else "all"
            console(config).say(
                f"{path} holds the first {table.n:,} training samples only: scoring {wanted} of "
                f"{len(dataset.labels('train')):,} instead"
            )
    table = _score_pass(config, dataset, data_key, teacher, sha, limit, save_logits)
    _require_finite_energies(table, teacher)
    if is_main():
        save_scores(path, table)
    return Scored(table=table, path=path, computed=True, file_rows=table.n)


def _score_pass(
    config: Config,
    dataset: Dataset,
    data_key: str,
    teacher: TrainedModel,
    sha: str,
    limit: int | None,
    save_logits: bool | None,
) -> ScoreTable:
    """One eval-mode pass of the teacher over the first ``limit`` training samples (all: None)."""
    from ekdcli.engine import Runtime, predict
    from ekdcli.method.scoring import score_from_logits

    options = engine_options(config)
    if options.precision == "auto":  # bf16 could reorder close energies; the pass is cheap next to training
        options.precision = "fp32"
    runtime = Runtime(options)
    logits, labels = predict(
        teacher.model, dataset, "train", runtime, limit=limit, desc=f"scoring {data_key} train"
    )
    return score_from_logits(
        logits,
        labels,
        config.energy_temperature,
        teacher=teacher_label(teacher),
        teacher_sha256=sha,
        dataset=data_key,
        dataset_fingerprint=dataset.fingerprint("train"),
        extra={"arch": teacher.arch, "weights": str(teacher.path), "precision": runtime.precision},
        keep_logits=save_logits,
        limit_train=limit,
    )


def _require_finite_energies(table: ScoreTable, teacher: TrainedModel) -> None:
    import torch

    bad = int((~torch.isfinite(table.energies)).sum())
    if bad:
        raise JobError(
            f"the teacher {teacher.path} gives non-finite logits for {bad} of {table.n} training samples "
            "(NaN or infinite energies), so no score file was written; retrain or re-import the teacher."
        )


@dataclass
class ScoreResult:
    """What ``ekd score`` made: the score file, its histogram, whether it was computed now (not
    reused), the training samples scored (``limit_train`` of them when set) and the summary."""

    scores: Path
    histogram: Path
    computed: bool
    limit_train: int | None
    train_samples: int
    summary: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` result (paths as text)."""
        return {**dataclasses.asdict(self), "scores": str(self.scores), "histogram": str(self.histogram)}


def check_score(config: Config, out: Path | None, rate: float) -> str:
    """The checks of ``ekd score`` that need no data, model or torch (``--nproc`` runs them once);
    returns the teacher's name."""
    if not config.teacher:
        raise UsageError(
            "say which teacher to score with --teacher (a name in the store or a .safetensors file)."
        )
    both_sides_rate("", "--rate", rate)  # the summary's low and high sets
    check_output(config, out)
    data_key = dataset_key(config)  # names are checked before torch is imported
    stored_weights_path(config.teacher, data_key, open_store(config), "teacher")  # before torch is imported
    return config.teacher


def run_score(
    config: Config, out: Path | None, force: bool, save_logits: bool | None, rate: float
) -> ScoreResult:
    teacher_name = check_score(config, out, rate)
    say = console(config)
    data_key = dataset_key(config)
    from ekdcli.engine import Runtime
    from ekdcli.method.figures import energy_histogram
    from ekdcli.method.scoring import format_summary, summarize
    from ekdcli.sdk.energy import compute_thresholds

    # Join the process group (under torchrun) even when the scores are reused: rank 0 alone draws.
    main = Runtime(engine_options(config)).is_main
    dataset = load_dataset(config)
    teacher = load_trained(teacher_name, dataset, data_key, open_store(config), "teacher")
    total = len(dataset.labels("train"))
    limit = score_limit(config, dataset)
    samples = f"the first {limit:,} of {total:,}" if limit is not None else f"all {total:,}"
    say.say(
        f"ekd score: teacher {teacher.arch} ({teacher.path}) on {data_key}, {samples} training images, "
        f"T_E = {config.energy_temperature:g}"
    )
    say_teacher(say, teacher.path, teacher.metadata)
    scored = ensure_scores(config, dataset, data_key, teacher, out=out, force=force, save_logits=save_logits)
    part = scored.table.n < scored.file_rows  # the first rows of a larger file
    if not scored.computed:
        held = f"; its first {scored.table.n:,} rows" if part else ""
        say.say(f"reusing {scored.path} (same teacher weights and data{held}; --force recomputes)")
    summary = summarize(scored.table, rate=rate)
    # the summary of part of a file gets its own figure: the file's own stays as it is
    figure = scored.path.with_suffix(f".first{scored.table.n}.png" if part else ".png")
    thresholds = compute_thresholds(scored.table.energies, rate, rate)
    if main:
        energy_histogram(
            scored.table.energies, thresholds, figure, title=f"Energy of {teacher.arch} on {data_key}"
        )
    say.say(format_summary(summary))
    say.say(f"scores: {scored.path}\nhistogram: {figure}")
    return ScoreResult(Path(scored.path), Path(figure), scored.computed, limit, total, summary)

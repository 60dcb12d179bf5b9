"""``ekd score``: teacher energies of the training set (computed once, then reused while they match)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.config import Config
from ekdcli.jobs.build import TrainedModel, dataset_key, load_dataset, load_trained
from ekdcli.jobs.common import console, engine_options, open_store, store_file_lock
from ekdcli.util.errors import JobError, UsageError

# How long a second process waits for the one scoring the same teacher (then reuses its file).
_SCORE_WAIT_S = 3600.0

if TYPE_CHECKING:
    from ekdcli.method.scoring import ScoreTable
    from ekdcli.sdk.contracts import Dataset


@dataclass
class Scored:
    table: ScoreTable
    path: Path
    computed: bool


def teacher_label(teacher: TrainedModel) -> str:
    """The name a teacher's scores are stored under: its weights file's name."""
    return teacher.path.stem


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
    """Reuse the stored score file when it matches the teacher and data; else score the training set.

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
    from ekdcli.engine import Runtime, predict
    from ekdcli.engine.ddp import is_main
    from ekdcli.method.scoring import check_compatible, load_scores, save_scores, score_from_logits
    from ekdcli.store.weights import weights_sha256

    sha = weights_sha256(teacher.path)
    fingerprint = dataset.fingerprint("train")
    if path.is_file() and not force:
        table = load_scores(path, teacher=teacher_label(teacher), data=config.data)
        check_compatible(table, sha, fingerprint, config.energy_temperature, data=config.data)
        # --save-logits asks for what a reused file lacks: score again rather than ignore the flag
        if not (save_logits and table.logits is None):
            return Scored(table=table, path=path, computed=False)
    options = engine_options(config)
    options.limit_train = None  # energies key every training sample, whatever the run uses
    if options.precision == "auto":  # bf16 could reorder close energies; the pass is cheap next to training
        options.precision = "fp32"
    runtime = Runtime(options)
    logits, labels = predict(teacher.model, dataset, "train", runtime)
    table = score_from_logits(
        logits,
        labels,
        config.energy_temperature,
        teacher=teacher_label(teacher),
        teacher_sha256=sha,
        dataset=data_key,
        dataset_fingerprint=fingerprint,
        extra={"arch": teacher.arch, "weights": str(teacher.path), "precision": runtime.precision},
        keep_logits=save_logits,
    )
    _require_finite_energies(table, teacher)
    if is_main():
        save_scores(path, table)
    return Scored(table=table, path=path, computed=True)


def _require_finite_energies(table: ScoreTable, teacher: TrainedModel) -> None:
    import torch

    bad = int((~torch.isfinite(table.energies)).sum())
    if bad:
        raise JobError(
            f"the teacher {teacher.path} gives non-finite logits for {bad} of {table.n} training samples "
            "(NaN or infinite energies), so no score file was written; retrain or re-import the teacher."
        )


def run_score(
    config: Config, out: Path | None, force: bool, save_logits: bool | None, rate: float
) -> dict[str, Any]:
    from ekdcli.engine import Runtime
    from ekdcli.method.figures import energy_histogram
    from ekdcli.method.scoring import format_summary, summarize
    from ekdcli.sdk.energy import compute_thresholds

    if not config.teacher:
        raise UsageError(
            "say which teacher to score with --teacher (a name in the store or a .safetensors file)."
        )
    if not 0 < rate <= 0.5:
        raise UsageError(f"--rate must be in (0, 0.5] for the summary's thresholds, not {rate}.")
    say = console(config)
    # Join the process group (under torchrun) even when the scores are reused: rank 0 alone draws.
    main = Runtime(engine_options(config)).is_main
    dataset = load_dataset(config)
    data_key = dataset_key(config)
    teacher = load_trained(config.teacher, dataset, data_key, open_store(config), "teacher")
    say.say(
        f"ekd score: teacher {teacher.arch} ({teacher.path}) on {data_key}, T_E = {config.energy_temperature}"
    )
    scored = ensure_scores(config, dataset, data_key, teacher, out=out, force=force, save_logits=save_logits)
    if not scored.computed:
        say.say(f"reusing {scored.path} (same teacher weights and data; --force recomputes)")
    summary = summarize(scored.table, rate=rate)
    figure = scored.path.with_suffix(".png")
    thresholds = compute_thresholds(scored.table.energies, rate, rate)
    if main:
        energy_histogram(
            scored.table.energies, thresholds, figure, title=f"Energy of {teacher.arch} on {data_key}"
        )
    say.say(format_summary(summary))
    say.say(f"scores: {scored.path}\nhistogram: {figure}")
    return {
        "scores": str(scored.path),
        "histogram": str(figure),
        "computed": scored.computed,
        "summary": summary,
    }

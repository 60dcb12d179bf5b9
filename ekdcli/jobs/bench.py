"""``ekd bench``: the cost of HE-DA per augmentation rate (the paper's Table 6), measured side by side.

Rates are interleaved over rounds (A, B, C, A, B, C, ...) and medians reported,
because a machine's speed drifts; each round times ``steps`` training steps
and the epoch time is extrapolated from the median step time.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.config import Config
from ekdcli.jobs.common import check_output, console, open_store
from ekdcli.jobs.plan import build_losses
from ekdcli.jobs.preparation import Prepared, open_teacher_cache, prepare
from ekdcli.sdk.options import augmentation_rate
from ekdcli.store.atomic import atomic_write_json, atomic_write_text
from ekdcli.util.errors import UsageError
from ekdcli.util.text import plural

if TYPE_CHECKING:
    from ekdcli.method.objective import DistillObjective

# The paper's Table 6: increase of time per epoch relative to r = 0.1 (a fraction: 0.0394 = +3.94%).
PAPER_TABLE6 = {0.1: 0.0, 0.2: 0.0394, 0.3: 0.0552, 0.4: 0.0878, 0.5: 0.1417, 1.0: 0.3326}


def parse_rates(text: str) -> list[float]:
    parts = text.split(",")
    if len(parts) > 1 and not all(part.strip() for part in parts):  # '0.1,,0.5': a rate went missing
        raise UsageError(f"--aug-rates {text!r} has an empty entry; list rates like 0.1,0.5,1.0.")
    try:
        rates = [float(part) for part in parts if part.strip()]
    except ValueError as exc:
        raise UsageError(
            f"--aug-rates must be comma-separated numbers like 0.1,0.5,1.0, not {text!r}."
        ) from exc
    if not rates:
        raise UsageError("--aug-rates needs at least one rate, e.g. 0.1,0.5,1.0.")
    for rate in rates:
        augmentation_rate("", "each of --aug-rates", rate)
    if len(set(rates)) != len(rates):
        raise UsageError(f"--aug-rates lists a rate twice: {text}.")
    return rates


def steps_per_epoch(job: Prepared) -> int:
    """Training steps of one epoch of the prepared run (``--limit-train`` included)."""
    n_train = len(job.dataset.labels("train"))
    limit = job.runtime.options.limit_train
    if limit is not None:
        n_train = min(n_train, limit)
    return max(1, n_train // job.recipe.batch_size)


@dataclass
class _Timings:
    """Per-rate step times and mixed rows per step, over every round (rate None: no augmentation)."""

    seconds: dict[float | None, list[float]]
    augmented: dict[float | None, list[float]]


@dataclass
class BenchResult:
    """What ``ekd bench`` measured: the distillation timed (``method``, ``augment`` in ``mode``,
    ``teacher`` and ``student`` archs, ``data``), its ``batch_size`` and ``steps_per_epoch``, the
    ``steps_per_round`` and ``rounds`` timed (epoch times are ``extrapolated`` from them), the
    teacher cache's hits and misses (None without ``--teacher-cache``), one row per rate (seconds
    per step and epoch, images/s, increase against the first rate and the paper's, their spread,
    and with ``--epochs`` the accuracies) and the ``files`` written (``txt``, ``json``, ``png``)."""

    method: str
    augment: str
    mode: str
    teacher: str | None
    student: str
    data: str
    batch_size: int
    steps_per_epoch: int
    steps_per_round: int
    rounds: int
    extrapolated: bool
    teacher_cache: dict[str, Any] | None
    rows: list[dict[str, Any]]
    files: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` result (``bench.json`` holds the same less ``files``)."""
        return dataclasses.asdict(self)


def run_bench(
    config: Config,
    rates: list[float],
    mode: str,
    steps: int,
    rounds: int,
    epochs: int | None,
    out_dir: Path | None,
    baseline: bool = False,
) -> BenchResult:
    """Time distillation with the augmentation at each rate; ``baseline`` adds a row without it."""
    if steps < 1 or rounds < 1:
        raise UsageError("--steps and --rounds must be at least 1.")
    check_output(config, out_dir)
    say = console(config)
    config = dataclasses.replace(
        config,
        augment=config.augment or "he-cutmix",
        augmentation={**config.augmentation, "mode": mode},
        rate=None,
    )
    job = prepare(config)
    if job.augmentation is None or not job.augmentation.needs_energy:
        raise UsageError(f"ekd bench varies an energy augmentation's rate; {config.augment!r} has none.")
    # With --teacher-cache every rate reads and fills the store's cache: clean rows are the same
    # teacher views whatever the rate (mixed rows are never cached).
    cache = None
    if config.teacher_cache and job.teacher is not None:
        cache = open_teacher_cache(config, job.dataset, job.data_key, job.teacher, job.runtime.precision, say)
    variants: list[float | None] = ([None] if baseline else []) + list(rates)
    _print_header(say, job, mode, rates, baseline, steps, rounds)
    timings = _time_rates(config, job, cache, variants, steps, rounds)
    rows = _rows(job, timings, variants, rates)
    if epochs:
        _train_rates(config, job, cache, rows, epochs)
    payload: dict[str, Any] = {
        "method": job.plan.distiller.name,
        "augment": job.augmentation.name,
        "mode": mode,
        "teacher": job.teacher.arch if job.teacher else None,
        "student": job.student_arch,
        "data": job.data_key,
        "batch_size": job.recipe.batch_size,
        "steps_per_epoch": steps_per_epoch(job),
        "steps_per_round": steps,
        "rounds": rounds,
        "extrapolated": True,
        "teacher_cache": _cache_note(say, cache),
        "rows": rows,
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = out_dir or open_store(config).root / "bench" / f"{job.augmentation.name}-{mode}-{stamp}"
    return BenchResult(**payload, files=_write(say, payload, out))


def _print_header(
    say: Any, job: Prepared, mode: str, rates: list[float], baseline: bool, steps: int, rounds: int
) -> None:
    assert job.augmentation is not None
    say.say(
        f"ekd bench: {job.plan.distiller.name} + {job.augmentation.name} ({mode} mode), {_pair_text(job)}, "
        f"batch {job.recipe.batch_size}, rates {', '.join(map(str, rates))}"
        + (" and no augmentation" if baseline else "")
    )
    say.say(
        f"  {plural(rounds, 'interleaved round')} x {plural(steps, 'step')} per rate; time per epoch = "
        f"median step time x {steps_per_epoch(job)} steps (extrapolated)"
    )


def _pair_text(job: Prepared) -> str:
    teacher = job.teacher.arch if job.teacher else "no teacher"
    return f"{teacher} -> {job.student_arch} on {job.data_key}"


def _objective(config: Config, job: Prepared, cache: Any, rate: float | None) -> DistillObjective:
    """The distillation with the augmentation at ``rate`` (None: without the augmentation)."""
    from ekdcli.method.objective import DistillObjective

    distiller, augmentation = build_losses(
        config,
        job.plan,
        job.pair,
        num_classes=job.dataset.num_classes,
        augmentation_options={} if rate is None else {"rate": rate},
    )
    teacher = copy.deepcopy(job.teacher.model) if job.teacher else None
    return DistillObjective(
        teacher, distiller, augmentation if rate is not None else None, job.energy, teacher_cache=cache
    )


def _time_rates(
    config: Config, job: Prepared, cache: Any, variants: list[float | None], steps: int, rounds: int
) -> _Timings:
    from ekdcli.engine import StepBench

    say = console(config)
    options = job.runtime.options
    benches = {
        rate: StepBench(
            copy.deepcopy(job.student), job.dataset, _objective(config, job, cache, rate), job.recipe, options
        )
        for rate in variants
    }
    timings = _Timings({rate: [] for rate in variants}, {rate: [] for rate in variants})
    for bench in benches.values():  # warm-up: first steps allocate and tune kernels
        bench.time_steps(1)
    for round_index in range(rounds):
        for rate in variants:
            timing = benches[rate].time_steps(steps)
            timings.seconds[rate].extend(timing.seconds)
            timings.augmented[rate].append(timing.stats.get("augmented", 0.0) / max(1, len(timing.seconds)))
            name = "none" if rate is None else f"{rate:g}"
            say.say(
                f"  round {round_index + 1}/{rounds}, rate {name}: {plural(len(timing.seconds), 'step')}, "
                f"median {statistics.median(timing.seconds):.4f} s/step"
            )
    return timings


# A rate whose step times spread more than this (interquartile range / median) is too noisy to compare.
NOISY = 0.2


def spread(seconds: list[float]) -> tuple[float, float]:
    """The first and third quartiles of step times (both the one time when there is one)."""
    if len(seconds) < 2:
        return seconds[0], seconds[0]
    q1, _, q3 = statistics.quantiles(seconds, n=4, method="inclusive")
    return q1, q3


def _rows(
    job: Prepared, timings: _Timings, variants: list[float | None], rates: list[float]
) -> list[dict[str, Any]]:
    base_step = statistics.median(timings.seconds[rates[0]])
    none_step = statistics.median(timings.seconds[None]) if None in timings.seconds else None
    rows = []
    for rate in variants:
        median = statistics.median(timings.seconds[rate])
        row: dict[str, Any] = {
            "rate": rate,
            "seconds_per_step": median,
            "seconds_per_epoch": median * steps_per_epoch(job),
            "images_per_s": job.recipe.batch_size / median,
            "augmented_per_step": statistics.mean(timings.augmented[rate]),
            # relative increases are fractions like every share in JSON (docs/configuration.md#units)
            "increase": median / base_step - 1.0,
            "paper_increase": PAPER_TABLE6.get(rate) if rate is not None else None,
        }
        q1, q3 = spread(timings.seconds[rate])
        # error bars of the increase: the quartiles of this rate's steps against the reference's median
        row["increase_range"] = [q1 / base_step - 1.0, q3 / base_step - 1.0]
        row["noise"] = (q3 - q1) / median  # interquartile range as a fraction of the median
        if none_step is not None:
            row["vs_no_augmentation"] = median / none_step - 1.0
        rows.append(row)
    return rows


def _train_rates(config: Config, job: Prepared, cache: Any, rows: list[dict[str, Any]], epochs: int) -> None:
    """``--epochs``: train each rate for real and add its accuracy to its row."""
    from ekdcli.engine import fit

    recipe = dataclasses.replace(job.recipe, epochs=epochs)
    for row in rows:
        objective = _objective(config, job, cache, row["rate"])
        result = fit(copy.deepcopy(job.student), job.dataset, objective, recipe, job.runtime.options, None)
        row.update({"best_top1": result.best_top1, "last_top1": result.last_top1, "epochs": epochs})


def _cache_note(say: Any, cache: Any) -> dict[str, Any] | None:
    if cache is None:
        return None
    cache.flush()
    say.say(
        f"  teacher cache: {cache.hits} hits, {cache.misses} misses over the timed and warm-up steps "
        f"({cache.directory})"
    )
    return {"hits": cache.hits, "misses": cache.misses, "path": str(cache.directory)}


def _write(say: Any, payload: dict[str, Any], out: Path) -> dict[str, str]:
    """Write the table, the JSON and the plot into ``out``; return their paths by suffix."""
    text = format_bench(payload)
    atomic_write_text(out / "bench.txt", text + "\n")
    atomic_write_json(out / "bench.json", payload)
    plot_bench(payload, out / "bench.png")
    say.say(text)
    say.say(f"table: {out / 'bench.txt'}\njson: {out / 'bench.json'}\nplot: {out / 'bench.png'}")
    return {name: str(out / f"bench.{name}") for name in ("txt", "json", "png")}


def format_bench(payload: dict[str, Any]) -> str:
    with_acc = any("best_top1" in row for row in payload["rows"])
    with_none = any("vs_no_augmentation" in row for row in payload["rows"])
    header = f"{'rate':>6} {'s/epoch':>10} {'images/s':>10} {'mixed/step':>11} {'increase':>9} {'paper':>8}"
    header += f" {'vs none':>9}" if with_none else ""
    header += f" {'best top-1':>11} {'last top-1':>11}" if with_acc else ""
    lines = [header]
    for row in payload["rows"]:
        paper = row["paper_increase"]
        rate = "none" if row["rate"] is None else str(float(row["rate"]))  # 1.0 as given, not 1
        line = (
            f"{rate:>6} {row['seconds_per_epoch']:>10.2f} {row['images_per_s']:>10.1f} "
            f"{row['augmented_per_step']:>11.1f} {100 * row['increase']:>+8.2f}% "
            f"{(f'{100 * paper:+.2f}%' if paper is not None else '-'):>8}"
        )
        if with_none:
            line += f" {100 * row['vs_no_augmentation']:>+8.2f}%"
        if with_acc:
            line += f" {100 * row.get('best_top1', math.nan):>11.2f} {100 * row.get('last_top1', math.nan):>11.2f}"
        lines.append(line)
    noisy = [row for row in payload["rows"] if row.get("noise", 0.0) > NOISY]
    if noisy:
        names = ", ".join("none" if r["rate"] is None else f"{r['rate']:g}" for r in noisy)
        lines.append(
            f"too noisy to compare: the step times of rate {names} spread over {100 * NOISY:.0f}% of their median "
            "(interquartile range); rerun on an idle machine or with more --rounds and --steps"
        )
    reference = next(row["rate"] for row in payload["rows"] if row["rate"] is not None)
    lines.append(
        f"(increase relative to rate {reference:g}"
        + ("; vs none: relative to the same distillation without augmentation" if with_none else "")
        + "; epoch times extrapolated from "
        f"{payload['rounds']} x {plural(payload['steps_per_round'], 'step')} per rate; paper = Table 6)"
    )
    return "\n".join(lines)


def plot_bench(payload: dict[str, Any], path: Path) -> Path:
    from ekdcli.method.figures import pyplot, save_figure

    plt = pyplot()
    measured = [row for row in payload["rows"] if row["rate"] is not None]
    rates = [row["rate"] for row in measured]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    increases = [100 * row["increase"] for row in measured]
    ranges = [row.get("increase_range", [row["increase"]] * 2) for row in measured]
    errors = [
        [max(0.0, y - 100 * lo) for y, (lo, _) in zip(increases, ranges, strict=True)],
        [max(0.0, 100 * hi - y) for y, (_, hi) in zip(increases, ranges, strict=True)],
    ]
    ax.errorbar(rates, increases, yerr=errors, fmt="o-", capsize=3, label="measured (quartiles of steps)")
    if any(row.get("noise", 0.0) > NOISY for row in measured):
        ax.text(
            0.5, 0.5, "too noisy to compare", transform=ax.transAxes, ha="center", color="tab:red", alpha=0.6
        )
    paper = [
        (row["rate"], 100 * row["paper_increase"]) for row in measured if row["paper_increase"] is not None
    ]
    if paper:
        ax.plot(*zip(*paper, strict=True), "s--", label="paper (Table 6)")
    ax.set_xlabel("augmentation rate r")
    ax.set_ylabel(f"time per epoch vs r = {rates[0]:g} (%)")
    ax.set_title(f"{payload['augment']} ({payload['mode']}): {payload['teacher']} -> {payload['student']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)

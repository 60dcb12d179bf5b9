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
from pathlib import Path
from typing import Any

from ekdcli.build import dataset_key, load_dataset
from ekdcli.config import Config
from ekdcli.errors import UsageError
from ekdcli.fsutil import atomic_write_json, atomic_write_text
from ekdcli.jobs.common import console, engine_options, open_store, resolve_recipe
from ekdcli.jobs.distill import _default_pair, _student, _teacher, plan_methods

# The paper's Table 6: increase of time per epoch relative to r = 0.1.
PAPER_TABLE6 = {0.1: 0.0, 0.2: 3.94, 0.3: 5.52, 0.4: 8.78, 0.5: 14.17, 1.0: 33.26}


def parse_rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise UsageError(f"--aug-rates must be comma-separated numbers like 0.1,0.5,1.0, not {text!r}.") from exc
    if not rates:
        raise UsageError("--aug-rates needs at least one rate, e.g. 0.1,0.5,1.0.")
    bad = [r for r in rates if not 0 < r <= 1]
    if bad:
        raise UsageError(f"augmentation rates must be in (0, 1]; got {', '.join(map(str, bad))}.")
    if len(set(rates)) != len(rates):
        raise UsageError(f"--aug-rates lists a rate twice: {text}.")
    return rates


def run_bench(
    config: Config,
    rates: list[float],
    mode: str,
    steps: int,
    rounds: int,
    epochs: int | None,
    out_dir: Path | None,
) -> dict[str, Any]:
    from ekdcli.api import EnergyContext
    from ekdcli.distill import DistillObjective
    from ekdcli.engine import StepBench, fit
    from ekdcli.jobs.score import ensure_scores

    if steps < 1 or rounds < 1:
        raise UsageError("--steps and --rounds must be at least 1.")
    say = console(config)
    if not config.augment:
        config = dataclasses.replace(config, augment="he-cutmix")
    config = dataclasses.replace(config, augmentation={**config.augmentation, "mode": mode}, rate=None)
    plan = plan_methods(config)
    if plan.augmentation is None or not plan.augmentation.info.get("needs_energy"):
        raise UsageError(f"ekd bench varies an energy augmentation's rate; {config.augment!r} has none.")
    teacher_name, student_name, defaulted = _default_pair(config)
    dataset = load_dataset(config)
    data_key = dataset_key(config)
    recipe = resolve_recipe(config, dataset)
    teacher = _teacher(config, teacher_name, dataset, data_key, defaulted)
    student, student_arch = _student(config, student_name, dataset, data_key)
    scored = ensure_scores(config, dataset, data_key, teacher)
    context = EnergyContext(
        energies=scored.table.energies.float(),
        energy_temperature=scored.table.meta.energy_temperature,
        fingerprint=scored.table.meta.fingerprint,
    )

    def objective(rate: float) -> DistillObjective:
        distiller = plan.distiller.build(**plan.distiller_options)
        augmentation = plan.augmentation.build(**{**plan.augmentation_options, "rate": rate})
        return DistillObjective(copy.deepcopy(teacher.model), distiller, augmentation, context)

    options = engine_options(config)
    n_train = len(dataset.labels("train"))
    if options.limit_train is not None:
        n_train = min(n_train, options.limit_train)
    steps_per_epoch = max(1, n_train // recipe.batch_size)
    say.say(
        f"ekd bench: {plan.distiller.name} + {plan.augmentation.name} ({mode} mode), {teacher.arch} -> "
        f"{student_arch} on {data_key}, batch {recipe.batch_size}, rates {', '.join(map(str, rates))}"
    )
    say.say(
        f"  {rounds} interleaved rounds x {steps} steps per rate; time per epoch = median step time x "
        f"{steps_per_epoch} steps (extrapolated)"
    )
    benches = {
        rate: StepBench(copy.deepcopy(student), dataset, objective(rate), recipe, options) for rate in rates
    }
    step_times: dict[float, list[float]] = {rate: [] for rate in rates}
    augmented: dict[float, list[float]] = {rate: [] for rate in rates}
    for bench in benches.values():  # warm-up: first steps allocate and tune kernels
        bench.time_steps(1)
    for round_index in range(rounds):
        for rate in rates:
            timing = benches[rate].time_steps(steps)
            step_times[rate].extend(timing.seconds)
            augmented[rate].append(timing.stats.get("augmented", 0.0) / max(1, len(timing.seconds)))
        say.say(f"  round {round_index + 1}/{rounds} done")
    rows = []
    base_step = statistics.median(step_times[rates[0]])
    for rate in rates:
        median = statistics.median(step_times[rate])
        rows.append(
            {
                "rate": rate,
                "seconds_per_step": median,
                "seconds_per_epoch": median * steps_per_epoch,
                "images_per_s": recipe.batch_size / median,
                "augmented_per_step": statistics.mean(augmented[rate]),
                "increase_pct": 100.0 * (median / base_step - 1.0),
                "paper_increase_pct": PAPER_TABLE6.get(rate),
            }
        )
    if epochs:
        for row in rows:
            rate = row["rate"]
            run_recipe = dataclasses.replace(recipe, epochs=epochs)
            result = fit(copy.deepcopy(student), dataset, objective(rate), run_recipe, options, None)
            row.update({"best_top1": result.best_top1, "last_top1": result.last_top1, "epochs": epochs})
    store = open_store(config)
    out = out_dir or store.root / "bench" / f"{plan.augmentation.name}-{mode}-{time.strftime('%Y%m%d-%H%M%S')}"
    payload = {
        "method": plan.distiller.name,
        "augment": plan.augmentation.name,
        "mode": mode,
        "teacher": teacher.arch,
        "student": student_arch,
        "data": data_key,
        "batch_size": recipe.batch_size,
        "steps_per_epoch": steps_per_epoch,
        "steps_per_round": steps,
        "rounds": rounds,
        "extrapolated": True,
        "rows": rows,
    }
    text = format_bench(payload)
    atomic_write_text(out / "bench.txt", text + "\n")
    atomic_write_json(out / "bench.json", payload)
    plot_bench(payload, out / "bench.png")
    say.say(text)
    say.say(f"table: {out / 'bench.txt'}\njson: {out / 'bench.json'}\nplot: {out / 'bench.png'}")
    payload["files"] = {name: str(out / f"bench.{name}") for name in ("txt", "json", "png")}
    return payload


def format_bench(payload: dict[str, Any]) -> str:
    with_acc = any("best_top1" in row for row in payload["rows"])
    header = f"{'rate':>6} {'s/epoch':>10} {'images/s':>10} {'mixed/step':>11} {'increase':>9} {'paper':>8}"
    header += f" {'best top-1':>11} {'last top-1':>11}" if with_acc else ""
    lines = [header]
    for row in payload["rows"]:
        paper = row["paper_increase_pct"]
        line = (
            f"{row['rate']:>6g} {row['seconds_per_epoch']:>10.2f} {row['images_per_s']:>10.1f} "
            f"{row['augmented_per_step']:>11.1f} {row['increase_pct']:>+8.2f}% "
            f"{(f'{paper:+.2f}%' if paper is not None else '-'):>8}"
        )
        if with_acc:
            line += f" {row.get('best_top1', math.nan):>11.2f} {row.get('last_top1', math.nan):>11.2f}"
        lines.append(line)
    lines.append(
        f"(increase relative to rate {payload['rows'][0]['rate']:g}; epoch times extrapolated from "
        f"{payload['rounds']} x {payload['steps_per_round']} steps per rate; paper = Table 6)"
    )
    return "\n".join(lines)


def plot_bench(payload: dict[str, Any], path: Path) -> Path:
    from ekdcli.figures import pyplot, save_figure

    plt = pyplot()
    rates = [row["rate"] for row in payload["rows"]]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(rates, [row["increase_pct"] for row in payload["rows"]], "o-", label="measured")
    paper = [(row["rate"], row["paper_increase_pct"]) for row in payload["rows"] if row["paper_increase_pct"] is not None]
    if paper:
        ax.plot(*zip(*paper), "s--", label="paper (Table 6)")
    ax.set_xlabel("augmentation rate r")
    ax.set_ylabel(f"time per epoch vs r = {rates[0]:g} (%)")
    ax.set_title(f"{payload['augment']} ({payload['mode']}): {payload['teacher']} -> {payload['student']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)

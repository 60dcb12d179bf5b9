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
from typing import Any

from ekdcli.config import Config
from ekdcli.jobs.build import dataset_key, load_dataset
from ekdcli.jobs.common import console, engine_options, open_store, resolve_recipe
from ekdcli.jobs.distill import (
    build_losses,
    check_student_name,
    load_student,
    load_teacher,
    open_teacher_cache,
    plan_methods,
    resolve_pair,
)
from ekdcli.store.atomic import atomic_write_json, atomic_write_text
from ekdcli.util.errors import UsageError

# The paper's Table 6: increase of time per epoch relative to r = 0.1.
PAPER_TABLE6 = {0.1: 0.0, 0.2: 3.94, 0.3: 5.52, 0.4: 8.78, 0.5: 14.17, 1.0: 33.26}


def _count(n: int, noun: str) -> str:
    """``1 step``, ``2 steps``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def parse_rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise UsageError(
            f"--aug-rates must be comma-separated numbers like 0.1,0.5,1.0, not {text!r}."
        ) from exc
    if not rates:
        raise UsageError("--aug-rates needs at least one rate, e.g. 0.1,0.5,1.0.")
    bad = [r for r in rates if not 0 < r <= 1]
    if bad:
        raise UsageError(f"augmentation rates must be in (0, 1]; got {', '.join(map(str, bad))}.")
    if len(set(rates)) != len(rates):
        raise UsageError(f"--aug-rates lists a rate twice: {text}.")
    return rates


@dataclass
class _Setup:
    """What both benches need: the configured pair, data, recipe and energies, loaded once."""

    plan: Any
    pair: tuple[str, str]  # teacher and student as named (per-pair loss defaults)
    teacher: Any
    student: Any
    student_arch: str
    dataset: Any
    data_key: str
    recipe: Any
    context: Any  # EnergyContext or None


def _setup(config: Config, needs_scores: bool) -> _Setup:
    from ekdcli.jobs.score import ensure_scores
    from ekdcli.sdk.contracts import EnergyContext

    plan = plan_methods(config)
    teacher_name, student_name, defaulted = resolve_pair(config)
    check_student_name(student_name)  # bad names and options fail before a teacher is trained
    build_losses(config, plan, (teacher_name, student_name))
    dataset = load_dataset(config)
    data_key = dataset_key(config)
    recipe = resolve_recipe(config, dataset, student_name)
    teacher = load_teacher(config, teacher_name, dataset, data_key, defaulted)
    student, student_arch = load_student(config, student_name, dataset, data_key)
    context = None
    if needs_scores:
        scored = ensure_scores(config, dataset, data_key, teacher)
        context = EnergyContext(
            energies=scored.table.energies.float(),
            energy_temperature=scored.table.meta.energy_temperature,
            fingerprint=scored.table.meta.fingerprint,
        )
    return _Setup(
        plan, (teacher_name, student_name), teacher, student, student_arch, dataset, data_key, recipe, context
    )


def _steps_per_epoch(setup: _Setup, options: Any) -> int:
    n_train = len(setup.dataset.labels("train"))
    if options.limit_train is not None:
        n_train = min(n_train, options.limit_train)
    return max(1, n_train // setup.recipe.batch_size)


def run_bench(
    config: Config,
    rates: list[float],
    mode: str,
    steps: int,
    rounds: int,
    epochs: int | None,
    out_dir: Path | None,
    baseline: bool = False,
) -> dict[str, Any]:
    """Time distillation with the augmentation at each rate; ``baseline`` adds a row without it."""
    from ekdcli.engine import Runtime, StepBench, fit
    from ekdcli.method.objective import DistillObjective

    if steps < 1 or rounds < 1:
        raise UsageError("--steps and --rounds must be at least 1.")
    say = console(config)
    if not config.augment:
        config = dataclasses.replace(config, augment="he-cutmix")
    config = dataclasses.replace(config, augmentation={**config.augmentation, "mode": mode}, rate=None)
    plan = plan_methods(config)
    if plan.augmentation is None or not plan.augmentation.info.get("needs_energy"):
        raise UsageError(f"ekd bench varies an energy augmentation's rate; {config.augment!r} has none.")
    setup = _setup(config, needs_scores=True)
    teacher, recipe, dataset, context = setup.teacher, setup.recipe, setup.dataset, setup.context
    options = engine_options(config)
    # With --teacher-cache every rate reads and fills the store's cache: clean rows are the same
    # teacher views whatever the rate (mixed rows are never cached).
    cache = (
        open_teacher_cache(config, dataset, setup.data_key, teacher, Runtime(options).precision, say)
        if config.teacher_cache
        else None
    )

    def objective(rate: float | None) -> DistillObjective:
        # rate None: the same distillation without the augmentation (--baseline)
        distiller, augmentation = build_losses(
            config, plan, setup.pair, **({} if rate is None else {"rate": rate})
        )
        augmentation = augmentation if rate is not None else None
        return DistillObjective(
            copy.deepcopy(teacher.model), distiller, augmentation, context, teacher_cache=cache
        )

    steps_per_epoch = _steps_per_epoch(setup, options)
    say.say(
        f"ekd bench: {plan.distiller.name} + {plan.augmentation.name} ({mode} mode), {teacher.arch} -> "
        f"{setup.student_arch} on {setup.data_key}, batch {recipe.batch_size}, rates "
        f"{', '.join(map(str, rates))}" + (" and no augmentation" if baseline else "")
    )
    say.say(
        f"  {_count(rounds, 'interleaved round')} x {_count(steps, 'step')} per rate; time per epoch = median step time x "
        f"{steps_per_epoch} steps (extrapolated)"
    )
    variants: list[float | None] = ([None] if baseline else []) + list(rates)
    benches = {
        rate: StepBench(copy.deepcopy(setup.student), dataset, objective(rate), recipe, options)
        for rate in variants
    }
    step_times: dict[float | None, list[float]] = {rate: [] for rate in variants}
    augmented: dict[float | None, list[float]] = {rate: [] for rate in variants}
    for bench in benches.values():  # warm-up: first steps allocate and tune kernels
        bench.time_steps(1)
    for round_index in range(rounds):
        for rate in variants:
            timing = benches[rate].time_steps(steps)
            step_times[rate].extend(timing.seconds)
            augmented[rate].append(timing.stats.get("augmented", 0.0) / max(1, len(timing.seconds)))
        say.say(f"  round {round_index + 1}/{rounds} done")
    cache_note = None
    if cache is not None:
        cache.flush()
        cache_note = {"hits": cache.hits, "misses": cache.misses, "path": str(cache.directory)}
        say.say(
            f"  teacher cache: {cache.hits} hits, {cache.misses} misses over the timed and warm-up steps "
            f"({cache.directory})"
        )
    rows = []
    base_step = statistics.median(step_times[rates[0]])
    none_step = statistics.median(step_times[None]) if baseline else None
    for rate in variants:
        median = statistics.median(step_times[rate])
        row = {
            "rate": rate,
            "seconds_per_step": median,
            "seconds_per_epoch": median * steps_per_epoch,
            "images_per_s": recipe.batch_size / median,
            "augmented_per_step": statistics.mean(augmented[rate]),
            "increase_pct": 100.0 * (median / base_step - 1.0),
            "paper_increase_pct": PAPER_TABLE6.get(rate) if rate is not None else None,
        }
        if none_step is not None:
            row["vs_no_augmentation_pct"] = 100.0 * (median / none_step - 1.0)
        rows.append(row)
    if epochs:
        for row in rows:
            run_recipe = dataclasses.replace(recipe, epochs=epochs)
            result = fit(
                copy.deepcopy(setup.student), dataset, objective(row["rate"]), run_recipe, options, None
            )
            row.update({"best_top1": result.best_top1, "last_top1": result.last_top1, "epochs": epochs})
    store = open_store(config)
    out = (
        out_dir or store.root / "bench" / f"{plan.augmentation.name}-{mode}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    payload = {
        "method": plan.distiller.name,
        "augment": plan.augmentation.name,
        "mode": mode,
        "teacher": teacher.arch,
        "student": setup.student_arch,
        "data": setup.data_key,
        "batch_size": recipe.batch_size,
        "steps_per_epoch": steps_per_epoch,
        "steps_per_round": steps,
        "rounds": rounds,
        "extrapolated": True,
        "teacher_cache": cache_note,
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
    with_none = any("vs_no_augmentation_pct" in row for row in payload["rows"])
    header = f"{'rate':>6} {'s/epoch':>10} {'images/s':>10} {'mixed/step':>11} {'increase':>9} {'paper':>8}"
    header += f" {'vs none':>9}" if with_none else ""
    header += f" {'best top-1':>11} {'last top-1':>11}" if with_acc else ""
    lines = [header]
    for row in payload["rows"]:
        paper = row["paper_increase_pct"]
        rate = "none" if row["rate"] is None else str(float(row["rate"]))  # 1.0 as given, not 1
        line = (
            f"{rate:>6} {row['seconds_per_epoch']:>10.2f} {row['images_per_s']:>10.1f} "
            f"{row['augmented_per_step']:>11.1f} {row['increase_pct']:>+8.2f}% "
            f"{(f'{paper:+.2f}%' if paper is not None else '-'):>8}"
        )
        if with_none:
            line += f" {row['vs_no_augmentation_pct']:>+8.2f}%"
        if with_acc:
            line += f" {row.get('best_top1', math.nan):>11.2f} {row.get('last_top1', math.nan):>11.2f}"
        lines.append(line)
    reference = next(row["rate"] for row in payload["rows"] if row["rate"] is not None)
    lines.append(
        f"(increase relative to rate {reference:g}"
        + ("; vs none: relative to the same distillation without augmentation" if with_none else "")
        + "; epoch times extrapolated from "
        f"{payload['rounds']} x {_count(payload['steps_per_round'], 'step')} per rate; paper = Table 6)"
    )
    return "\n".join(lines)


def plot_bench(payload: dict[str, Any], path: Path) -> Path:
    from ekdcli.method.figures import pyplot, save_figure

    plt = pyplot()
    measured = [row for row in payload["rows"] if row["rate"] is not None]
    rates = [row["rate"] for row in measured]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(rates, [row["increase_pct"] for row in measured], "o-", label="measured")
    paper = [
        (row["rate"], row["paper_increase_pct"]) for row in measured if row["paper_increase_pct"] is not None
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


# ---------------------------------------------------------------- ekd bench --engine
ENGINE_VARIANTS = ("fp32", "bf16", "nchw", "compile", "cache-cold", "cache-warm")


@dataclass(frozen=True)
class EngineVariant:
    """One way of running the same distillation step."""

    name: str
    precision: str
    channels_last: bool = True
    compile: bool = False
    cache: str = "off"  # off, cold (emptied before each round) or warm (every view of the round filled)

    def describe(self) -> str:
        layout = "channels-last" if self.channels_last else "NCHW"
        return f"{self.precision}, {layout}, compile {'on' if self.compile else 'off'}, cache {self.cache}"


def parse_variants(text: str) -> list[str]:
    from ekdcli.util.errors import did_you_mean

    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError(f"--variants needs at least one of {', '.join(ENGINE_VARIANTS)}.")
    for name in names:
        if name not in ENGINE_VARIANTS:
            raise UsageError(
                f"unknown engine variant {name!r}.{did_you_mean(name, ENGINE_VARIANTS)} "
                f"Choose from {', '.join(ENGINE_VARIANTS)}."
            )
    if len(set(names)) != len(names):
        raise UsageError(f"--variants lists a variant twice: {text}.")
    return names


def engine_variants(names: list[str], default_precision: str) -> list[EngineVariant]:
    """``fp32``/``bf16`` differ in precision only; the others change one thing of the engine default."""
    table = {
        "fp32": EngineVariant("fp32", "fp32"),
        "bf16": EngineVariant("bf16", "bf16"),
        "nchw": EngineVariant("nchw", default_precision, channels_last=False),
        "compile": EngineVariant("compile", default_precision, compile=True),
        "cache-cold": EngineVariant("cache-cold", default_precision, cache="cold"),
        "cache-warm": EngineVariant("cache-warm", default_precision, cache="warm"),
    }
    return [table[name] for name in names]


def precision_reason(runtime: Any) -> str:
    """Why ``precision = auto`` resolved as it did on this machine (the rule in Runtime)."""
    import torch

    from ekdcli.engine.runtime import cpu_flags

    if runtime.device.type == "cuda":
        return (
            "the GPU supports bf16"
            if torch.cuda.is_bf16_supported()
            else "the GPU has no bf16: fp16 with loss scaling"
        )
    native = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    if runtime.precision == "bf16":
        return f"this CPU computes bf16 natively ({', '.join(native) or 'per PyTorch'})"
    return "this CPU has no native bf16 (no avx512_bf16/amx_bf16), where bf16 would be emulated"


def run_engine_bench(
    config: Config, variants: list[str], steps: int, rounds: int, out_dir: Path | None
) -> dict[str, Any]:
    """Images/s of the configured distillation step under each engine variant, interleaved in rounds."""
    import tempfile

    from ekdcli.engine import Runtime, StepBench
    from ekdcli.method.objective import DistillObjective
    from ekdcli.method.scoring import weights_sha256
    from ekdcli.method.teacher_cache import TeacherCache, build_key
    from ekdcli.sdk.contracts import InMemoryDataset

    if steps < 1 or rounds < 1:
        raise UsageError("--steps and --rounds must be at least 1.")
    say = console(config)
    plan = plan_methods(config)
    needs_energy = bool(plan.distiller.info.get("needs_energy")) or bool(
        plan.augmentation is not None and plan.augmentation.info.get("needs_energy")
    )
    setup = _setup(config, needs_scores=needs_energy)
    teacher, dataset, recipe = setup.teacher, setup.dataset, setup.recipe
    options = engine_options(config)
    default = Runtime(options)
    why = "configured" if config.precision != "auto" else f"auto: {precision_reason(default)}"
    chosen = engine_variants(variants, default.precision)
    if default.device.type == "cpu":
        chosen = [v for v in chosen if v.precision != "fp16"]
    cached = [v for v in chosen if v.cache != "off"]
    if cached and not isinstance(dataset, InMemoryDataset):
        say.say("  teacher cache variants skipped: the cache applies to in-memory datasets only")
        chosen = [v for v in chosen if v.cache == "off"]
    sha = weights_sha256(teacher.path) if cached else ""

    say.say(
        f"ekd bench --engine: {plan.distiller.name}"
        + (f" + {plan.augmentation.name}" if plan.augmentation else "")
        + f", {teacher.arch} -> {setup.student_arch} on {setup.data_key}, batch {recipe.batch_size}, "
        f"{default.device} ({default.num_threads} threads)"
    )
    say.say(
        f"  engine default: {default.precision} ({why}), channels-last "
        f"{'on' if options.channels_last else 'off'}, compile {'on' if options.compile else 'off'}, "
        f"teacher cache {'on' if config.teacher_cache else 'off (opt-in: --teacher-cache)'}"
    )
    say.say(
        f"  {_count(rounds, 'interleaved round')} x {_count(steps, 'step')} per variant; medians reported"
    )
    scratch = tempfile.TemporaryDirectory(prefix="ekd-bench-cache-")
    benches: dict[str, tuple[EngineVariant, Any, Any]] = {}
    failed: dict[str, str] = {}
    try:
        for variant in chosen:
            run_options = dataclasses.replace(
                options,
                precision=variant.precision,
                channels_last=variant.channels_last,
                compile=variant.compile,
            )
            runtime = Runtime(run_options)
            cache = None
            if variant.cache != "off":
                key = build_key(dataset, sha, runtime.precision, "auto")
                cache = TeacherCache.open(Path(scratch.name) / variant.name, key)
            distiller, augmentation = build_losses(config, plan, setup.pair)
            objective = DistillObjective(
                copy.deepcopy(teacher.model),
                distiller,
                augmentation,
                setup.context,
                teacher_cache=cache,
            )
            bench = StepBench(copy.deepcopy(setup.student), dataset, objective, recipe, run_options, runtime)
            try:
                bench.time_steps(2)  # warm-up: allocation, kernel choice, compilation
            except Exception as exc:  # a variant this machine cannot run is reported, not fatal
                failed[variant.name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                say.say(f"  {variant.name}: failed to run ({failed[variant.name]})")
                continue
            benches[variant.name] = (variant, bench, cache)
        if not benches:
            raise UsageError("no engine variant could run here; see the messages above.")
        rates: dict[str, list[float]] = {name: [] for name in benches}
        hit_rates: dict[str, list[float]] = {name: [] for name in benches}
        for round_index in range(rounds):
            for name, (variant, bench, cache) in benches.items():
                images_per_s, hit_rate = _time_variant(variant, bench, cache, steps)
                rates[name].append(images_per_s)
                if hit_rate is not None:
                    hit_rates[name].append(hit_rate)
            say.say(f"  round {round_index + 1}/{rounds} done")
    finally:
        scratch.cleanup()
    # the fp32 or bf16 row is the engine default when its precision is the default one
    reference = default.precision if default.precision in rates else None
    rows = []
    for name in benches:
        variant = engine_variants([name], default.precision)[0]
        median = statistics.median(rates[name])
        rows.append(
            {
                "variant": name,
                "precision": variant.precision,
                "channels_last": variant.channels_last,
                "compile": variant.compile,
                "cache": variant.cache,
                "images_per_s": median,
                "images_per_s_rounds": rates[name],
                "vs_default": median / statistics.median(rates[reference]) if reference else None,
                "cache_hit_rate": statistics.mean(hit_rates[name]) if hit_rates[name] else None,
            }
        )
    payload = {
        "method": plan.distiller.name,
        "augment": plan.augmentation.name if plan.augmentation else None,
        "teacher": teacher.arch,
        "student": setup.student_arch,
        "data": setup.data_key,
        "batch_size": recipe.batch_size,
        "device": str(default.device),
        "device_name": default.describe()["device_name"],
        "threads": default.num_threads,
        "steps_per_round": steps,
        "rounds": rounds,
        "default": {
            "precision": default.precision,
            "why": why,
            "channels_last": options.channels_last,
            "compile": options.compile,
            "teacher_cache": bool(config.teacher_cache),
        },
        "reference_variant": reference,
        "rows": rows,
        "failed": failed,
    }
    payload["verdict"] = engine_verdict(payload)
    text = format_engine_bench(payload)
    out = out_dir or open_store(config).root / "bench" / f"engine-{time.strftime('%Y%m%d-%H%M%S')}"
    atomic_write_text(out / "bench-engine.txt", text + "\n")
    atomic_write_json(out / "bench-engine.json", payload)
    say.say(text)
    say.say(f"table: {out / 'bench-engine.txt'}\njson: {out / 'bench-engine.json'}")
    payload["files"] = {"txt": str(out / "bench-engine.txt"), "json": str(out / "bench-engine.json")}
    return payload


def _time_variant(variant: EngineVariant, bench: Any, cache: Any, steps: int) -> tuple[float, float | None]:
    """One round of one variant: images/s, and the share of clean rows served by the cache."""
    if variant.cache == "cold":
        cache.clear()  # every view of the round is a miss: fill cost included
        bench.restart()
    elif variant.cache == "warm":
        bench.restart()
        bench.time_steps(steps)  # untimed: fills exactly the views the timed pass will ask for
        bench.replay()
    if cache is not None:
        cache.reset_counts()
    timing = bench.time_steps(steps)
    hit_rate = None
    if cache is not None:
        hit_rate = cache.hits / max(1, cache.hits + cache.misses)
    return timing.images_per_s, hit_rate


def engine_verdict(payload: dict[str, Any]) -> str:
    """One sentence: what the engine uses by default here, and whether the measurement agrees."""
    rows = {row["variant"]: row for row in payload["rows"]}
    default = payload["default"]
    lines = [
        f"The engine trains with {default['precision']} here ({default['why']}), channels-last "
        f"{'on' if default['channels_last'] else 'off'}, compile {'on' if default['compile'] else 'off'}, "
        + (
            "teacher cache on."
            if default.get("teacher_cache")
            else "teacher cache off unless --teacher-cache."
        )
    ]
    precisions = {name: rows[name]["images_per_s"] for name in ("fp32", "bf16") if name in rows}
    if len(precisions) == 2:
        fastest = max(precisions, key=precisions.__getitem__)
        ratio = precisions["bf16"] / precisions["fp32"]
        agree = "agrees" if fastest == default["precision"] else "disagrees"
        lines.append(f"Measured bf16/fp32 = {ratio:.2f}x: the measurement {agree} with that choice.")
    reference = payload["reference_variant"]
    for name, label in (("nchw", "NCHW instead of channels-last"), ("compile", "torch.compile")):
        if name in rows and reference:
            lines.append(f"{label}: {rows[name]['vs_default']:.2f}x the default.")
    for name in ("cache-cold", "cache-warm"):
        if name in rows and reference:
            lines.append(
                f"teacher cache {name[6:]}: {rows[name]['vs_default']:.2f}x the default "
                f"({100 * (rows[name]['cache_hit_rate'] or 0):.0f}% hits)."
            )
    return " ".join(lines)


def format_engine_bench(payload: dict[str, Any]) -> str:
    header = (
        f"{'variant':<11} {'precision':>9} {'layout':>13} {'compile':>7} {'cache':>6} {'images/s':>9} "
        f"{'vs default':>10} {'hits':>5}"
    )
    lines = [header]
    for row in payload["rows"]:
        ratio = f"{row['vs_default']:.2f}x" if row["vs_default"] is not None else "-"
        hits = f"{100 * row['cache_hit_rate']:.0f}%" if row["cache_hit_rate"] is not None else "-"
        layout = "channels-last" if row["channels_last"] else "NCHW"
        compiled = "on" if row["compile"] else "off"
        lines.append(
            f"{row['variant']:<11} {row['precision']:>9} {layout:>13} {compiled:>7} "
            f"{row['cache']:>6} {row['images_per_s']:>9.1f} {ratio:>10} {hits:>5}"
        )
    for name, reason in payload["failed"].items():
        lines.append(f"{name:<11} failed: {reason}")
    lines.append(
        f"({payload['method']}, {payload['teacher']} -> {payload['student']}, batch {payload['batch_size']}, "
        f"{payload['device_name']}, {payload['threads']} threads; medians of {payload['rounds']} interleaved "
        f"rounds x {payload['steps_per_round']} steps; default = {payload['reference_variant'] or '-'})"
    )
    lines.append(payload["verdict"])
    return "\n".join(lines)

"""``ekd bench-engine``: images/s of one distillation step under each engine variant, side by side.

Variants (fp32, bf16, NCHW instead of channels-last, torch.compile, the teacher cache cold or
warm) are interleaved over rounds and medians reported; the verdict says which default the
engine picks on this machine and whether the measurement agrees with it.
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.config import Config
from ekdcli.jobs.common import check_output, console, open_store
from ekdcli.jobs.plan import build_losses
from ekdcli.jobs.preparation import Prepared, prepare
from ekdcli.store.atomic import atomic_write_json, atomic_write_text
from ekdcli.util.errors import UsageError, did_you_mean
from ekdcli.util.text import plural

if TYPE_CHECKING:
    from ekdcli.engine import Runtime

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


def precision_reason(runtime: Runtime) -> str:
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


@dataclass
class EngineBenchResult:
    """What ``ekd bench-engine`` measured: the distillation step timed (``method``, ``augment``,
    ``teacher`` and ``student`` archs, ``data``, ``batch_size``), the ``device`` (its
    ``device_name`` and CPU ``threads``), the ``steps_per_round`` and ``rounds``, the engine
    ``default`` (precision and why, channels-last, compile, teacher cache), the variant the others
    are compared with (``reference_variant``, None when no row runs the default precision), one
    row per variant (images/s, its rounds, ratio to the default, cache hit rate), the variants that
    ``failed`` (name: reason), the one-sentence ``verdict`` and the ``files`` written (``txt``,
    ``json``)."""

    method: str
    augment: str | None
    teacher: str
    student: str
    data: str
    batch_size: int
    device: str
    device_name: str
    threads: int
    steps_per_round: int
    rounds: int
    default: dict[str, Any]
    reference_variant: str | None
    rows: list[dict[str, Any]]
    failed: dict[str, str]
    verdict: str
    files: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` result (``bench-engine.json`` holds the same less ``files``)."""
        return dataclasses.asdict(self)


def run_engine_bench(
    config: Config, variants: list[str], steps: int, rounds: int, out_dir: Path | None
) -> EngineBenchResult:
    """Images/s of the configured distillation step under each engine variant, interleaved in rounds."""
    if steps < 1 or rounds < 1:
        raise UsageError("--steps and --rounds must be at least 1.")
    check_output(config, out_dir)
    say = console(config)
    job = prepare(config)
    if job.teacher is None:
        raise UsageError(
            f"ekd bench-engine times distillation; method {job.plan.distiller.name!r} has no teacher."
        )
    default = job.runtime
    why = "configured" if config.precision != "auto" else f"auto: {precision_reason(default)}"
    chosen = _runnable(say, job, engine_variants(variants, default.precision))
    _print_header(say, config, job, steps, rounds, why)
    with tempfile.TemporaryDirectory(prefix="ekd-bench-cache-") as scratch:
        benches, failed = _build_benches(config, job, chosen, Path(scratch))
        if not benches:
            raise UsageError("no engine variant could run here; see the messages above.")
        speeds, hit_rates = _time_rounds(say, benches, steps, rounds)
    # the fp32 or bf16 row is the engine default when its precision is the default one
    reference = default.precision if default.precision in speeds else None
    payload: dict[str, Any] = {
        "method": job.plan.distiller.name,
        "augment": job.plan.augmentation.name if job.plan.augmentation else None,
        "teacher": job.teacher.arch,
        "student": job.student_arch,
        "data": job.data_key,
        "batch_size": job.recipe.batch_size,
        "device": str(default.device),
        "device_name": default.describe()["device_name"],
        "threads": default.num_threads,
        "steps_per_round": steps,
        "rounds": rounds,
        "default": {
            "precision": default.precision,
            "why": why,
            "channels_last": default.options.channels_last,
            "compile": default.options.compile,
            "teacher_cache": bool(config.teacher_cache),
        },
        "reference_variant": reference,
        "rows": _rows(benches, speeds, hit_rates, reference),
        "failed": failed,
    }
    payload["verdict"] = engine_verdict(payload)
    out = out_dir or open_store(config).root / "bench" / f"engine-{time.strftime('%Y%m%d-%H%M%S')}"
    return EngineBenchResult(**payload, files=_write(say, payload, out))


def _runnable(say: Any, job: Prepared, chosen: list[EngineVariant]) -> list[EngineVariant]:
    """The variants this machine and dataset can run (no fp16 on a CPU, no cache for folder data)."""
    from ekdcli.sdk.contracts import InMemoryDataset

    if job.runtime.device.type == "cpu":
        chosen = [v for v in chosen if v.precision != "fp16"]
    if any(v.cache != "off" for v in chosen) and not isinstance(job.dataset, InMemoryDataset):
        say.say("  teacher cache variants skipped: the cache applies to in-memory datasets only")
        chosen = [v for v in chosen if v.cache == "off"]
    return chosen


def _print_header(say: Any, config: Config, job: Prepared, steps: int, rounds: int, why: str) -> None:
    default, options = job.runtime, job.runtime.options
    assert job.teacher is not None
    say.say(
        f"ekd bench-engine: {job.plan.distiller.name}"
        + (f" + {job.plan.augmentation.name}" if job.plan.augmentation else "")
        + f", {job.teacher.arch} -> {job.student_arch} on {job.data_key}, batch {job.recipe.batch_size}, "
        f"{default.device} ({default.num_threads} threads)"
    )
    say.say(
        f"  engine default: {default.precision} ({why}), channels-last "
        f"{'on' if options.channels_last else 'off'}, compile {'on' if options.compile else 'off'}, "
        f"teacher cache {'on' if config.teacher_cache else 'off (opt-in: --teacher-cache)'}"
    )
    say.say(
        f"  {plural(rounds, 'interleaved round')} x {plural(steps, 'step')} per variant; medians reported"
    )


@dataclass
class _Bench:
    variant: EngineVariant
    bench: Any  # StepBench
    cache: Any  # TeacherCache or None


def _build_benches(
    config: Config, job: Prepared, chosen: list[EngineVariant], scratch: Path
) -> tuple[dict[str, _Bench], dict[str, str]]:
    """One warmed-up StepBench per variant; a variant this machine cannot run is reported, not fatal."""
    from ekdcli.engine import Runtime, StepBench
    from ekdcli.method.objective import DistillObjective
    from ekdcli.method.teacher_cache import TeacherCache, build_key
    from ekdcli.sdk.contracts import InMemoryDataset
    from ekdcli.store.weights import weights_sha256

    assert job.teacher is not None
    sha = weights_sha256(job.teacher.path) if any(v.cache != "off" for v in chosen) else ""
    benches: dict[str, _Bench] = {}
    failed: dict[str, str] = {}
    for variant in chosen:
        options = dataclasses.replace(
            job.runtime.options,
            precision=variant.precision,
            channels_last=variant.channels_last,
            compile=variant.compile,
        )
        runtime = Runtime(options)
        cache = None
        if variant.cache != "off":
            assert isinstance(job.dataset, InMemoryDataset)  # _runnable dropped them for folder data
            cache = TeacherCache.open(
                scratch / variant.name, build_key(job.dataset, sha, runtime.precision, "auto")
            )
        distiller, augmentation = build_losses(
            config, job.plan, job.pair, num_classes=job.dataset.num_classes
        )
        teacher = copy.deepcopy(job.teacher.model)
        objective = DistillObjective(teacher, distiller, augmentation, job.energy, teacher_cache=cache)
        bench = StepBench(copy.deepcopy(job.student), job.dataset, objective, job.recipe, options, runtime)
        try:
            bench.time_steps(2)  # warm-up: allocation, kernel choice, compilation
        except Exception as exc:
            failed[variant.name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            console(config).say(f"  {variant.name}: failed to run ({failed[variant.name]})")
            continue
        benches[variant.name] = _Bench(variant, bench, cache)
    return benches, failed


def _time_rounds(
    say: Any, benches: dict[str, _Bench], steps: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    speeds: dict[str, list[float]] = {name: [] for name in benches}
    hit_rates: dict[str, list[float]] = {name: [] for name in benches}
    for round_index in range(rounds):
        for name, entry in benches.items():
            images_per_s, hit_rate = _time_variant(entry.variant, entry.bench, entry.cache, steps)
            speeds[name].append(images_per_s)
            if hit_rate is not None:
                hit_rates[name].append(hit_rate)
        say.say(f"  round {round_index + 1}/{rounds} done")
    return speeds, hit_rates


def _rows(
    benches: dict[str, _Bench],
    speeds: dict[str, list[float]],
    hit_rates: dict[str, list[float]],
    reference: str | None,
) -> list[dict[str, Any]]:
    rows = []
    for name, entry in benches.items():
        variant, median = entry.variant, statistics.median(speeds[name])
        rows.append(
            {
                "variant": name,
                "precision": variant.precision,
                "channels_last": variant.channels_last,
                "compile": variant.compile,
                "cache": variant.cache,
                "images_per_s": median,
                "images_per_s_rounds": speeds[name],
                "vs_default": median / statistics.median(speeds[reference]) if reference else None,
                "cache_hit_rate": statistics.mean(hit_rates[name]) if hit_rates[name] else None,
            }
        )
    return rows


def _write(say: Any, payload: dict[str, Any], out: Path) -> dict[str, str]:
    """Write the table and the JSON into ``out``; return their paths by suffix."""
    text = format_engine_bench(payload)
    atomic_write_text(out / "bench-engine.txt", text + "\n")
    atomic_write_json(out / "bench-engine.json", payload)
    say.say(text)
    say.say(f"table: {out / 'bench-engine.txt'}\njson: {out / 'bench-engine.json'}")
    return {"txt": str(out / "bench-engine.txt"), "json": str(out / "bench-engine.json")}


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

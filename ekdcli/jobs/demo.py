"""``ekd demo``: the whole pipeline on the embedded data, the first thing a new user runs."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from ekdcli.config import DEFAULT_DATA, DEFAULT_PAIR, Config
from ekdcli.jobs.common import console, open_store
from ekdcli.util.text import plural

if TYPE_CHECKING:
    from ekdcli.jobs.bench import BenchResult
    from ekdcli.jobs.distill import DistillResult
    from ekdcli.jobs.evaluate import EvaluateResult


@dataclasses.dataclass(frozen=True)
class DemoPlan:
    teacher_epochs: int
    student_epochs: int
    bench_steps: int
    bench_rounds: int = 3
    limit_train: int | None = None
    limit_test: int | None = None


FULL = DemoPlan(teacher_epochs=20, student_epochs=15, bench_steps=5)
QUICK = DemoPlan(
    teacher_epochs=2, student_epochs=1, bench_steps=1, bench_rounds=2, limit_train=256, limit_test=128
)


def _decay(epochs: int) -> dict[str, Any]:
    """The quick recipe's two learning-rate decays, placed at 60% and 85% of a short run."""
    return {"milestones": sorted({max(1, round(epochs * 0.6)), max(1, round(epochs * 0.85))})}


@dataclasses.dataclass
class DemoResult:
    """What ``ekd demo`` made: the files and runs by role (``artifacts``: teacher, scores, figures,
    runs, bench table), the two distillations (``kd``, ``energy_kd``), their evaluation side by
    side, the HE-DA bench and the minutes the whole demo took."""

    artifacts: dict[str, str]
    kd: DistillResult
    energy_kd: DistillResult
    evaluation: EvaluateResult
    bench: BenchResult
    minutes: float

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` result: each step's own ``--json`` result under its name."""
        return {
            "artifacts": dict(self.artifacts),
            "kd": self.kd.as_dict(),
            "energy_kd": self.energy_kd.as_dict(),
            "evaluation": self.evaluation.as_dict(),
            "bench": self.bench.as_dict(),
            "minutes": self.minutes,
        }


def run_demo(config: Config, quick: bool = False) -> DemoResult:
    plan = QUICK if quick else FULL
    say = console(config)
    base = dataclasses.replace(
        config,
        data=config.data if config.sources.get("data") == "flag" else DEFAULT_DATA,
        teacher=config.teacher or DEFAULT_PAIR[0],
        student=config.student or DEFAULT_PAIR[1],
        limit_train=config.limit_train or plan.limit_train,
        limit_test=config.limit_test or plan.limit_test,
    )
    started = time.perf_counter()
    artifacts: dict[str, str] = {}
    _introduce(base)
    _train_teacher(base, plan, artifacts)
    _score_and_partition(base, artifacts)
    kd, energy = _distill_both(base, plan, artifacts)
    evaluated = _evaluate_both(base, kd, energy)
    benched = _bench(base, plan, artifacts)
    minutes = (time.perf_counter() - started) / 60
    say.say(f"\n=== done in {minutes:.1f} min; artifacts ===")
    for name, path in artifacts.items():
        say.say(f"  {name:<20} {path}")
    say.say("\nNext: 'ekd list models', 'ekd distill --help', and examples/README.md for the paper's tables.")
    return DemoResult(artifacts, kd, energy, evaluated, benched, minutes)


def _step(config: Config, title: str) -> None:
    console(config).say(f"\n=== {title} ===")


def _introduce(base: Config) -> None:
    from ekdcli.jobs.build import load_dataset

    dataset = load_dataset(base)
    console(base).say(
        f"ekd demo: {dataset.name} ({len(dataset.labels('train'))} training images, {dataset.num_classes} classes), "
        f"teacher {base.teacher}, student {base.student}, store {open_store(base).root}"
    )


def _train_teacher(base: Config, plan: DemoPlan, artifacts: dict[str, str]) -> None:
    from ekdcli.jobs.train import run_train

    _step(base, f"1/6 train the teacher {base.teacher} ({plural(plan.teacher_epochs, 'epoch')})")
    teacher = dataclasses.replace(
        base, model=base.teacher, epochs=plan.teacher_epochs, train=_decay(plan.teacher_epochs)
    )
    artifacts["teacher"] = str(run_train(teacher).model_path)


def _score_and_partition(base: Config, artifacts: dict[str, str]) -> None:
    from ekdcli.jobs.partition import run_partition
    from ekdcli.jobs.score import run_score

    _step(base, "2/6 score the training set by teacher energy")
    scored = run_score(
        dataclasses.replace(base, limit_train=None), out=None, force=True, save_logits=True, rate=0.2
    )
    artifacts["scores"] = str(scored.scores)
    artifacts["histogram"] = str(scored.histogram)
    _step(base, "3/6 partition into low / others / high energy (rate 0.2) with the paper's figures")
    parted = run_partition(
        dataclasses.replace(base, rate=0.2), scores=None, segments=None, per_class=6, classes=4, figures=True
    )
    artifacts.update(parted.files)


def _distill_both(
    base: Config, plan: DemoPlan, artifacts: dict[str, str]
) -> tuple[DistillResult, DistillResult]:
    from ekdcli.jobs.distill import run_distill

    _step(
        base,
        "4/6 distill: KD, then Energy KD + HE-DA (CutMix on the 50% highest-energy images), "
        f"{plural(plan.student_epochs, 'epoch')}",
    )
    student = dataclasses.replace(
        base, epochs=plan.student_epochs, run_name=None, train=_decay(plan.student_epochs)
    )
    kd = run_distill(dataclasses.replace(student, method="kd", augment=None, rate=None))
    energy = run_distill(dataclasses.replace(student, method="energy_kd", augment="he-cutmix", rate=0.5))
    artifacts["kd_run"] = str(kd.run_dir)
    artifacts["energy_kd_run"] = str(energy.run_dir)
    return kd, energy


def _evaluate_both(base: Config, kd: DistillResult, energy: DistillResult) -> EvaluateResult:
    from ekdcli.jobs.evaluate import run_evaluate
    from ekdcli.jobs.evaluate_report import format_evaluation

    _step(base, "5/6 evaluate both students side by side")
    evaluated = run_evaluate(base, [str(kd.run_dir), str(energy.run_dir)], "test", None, "best", groups=True)
    console(base).say(format_evaluation(evaluated.as_dict()))
    return evaluated


def _bench(base: Config, plan: DemoPlan, artifacts: dict[str, str]) -> BenchResult:
    from ekdcli.jobs.bench import run_bench

    _step(base, "6/6 bench: HE-DA time per epoch at rates 0.1, 0.5, 1.0 (the paper's Table 6)")
    benched = run_bench(
        dataclasses.replace(base, method="kd", augment="he-cutmix"),
        [0.1, 0.5, 1.0],
        "extra",
        steps=plan.bench_steps,
        rounds=plan.bench_rounds,
        epochs=None,
        out_dir=None,
    )
    artifacts["bench"] = benched.files["txt"]
    artifacts["bench_plot"] = benched.files["png"]
    console(base).say(
        "(a short measurement, so noisy: 'ekd bench --steps 20 --rounds 5' gives steadier numbers)"
    )
    return benched

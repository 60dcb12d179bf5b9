"""The training loop shared by every command that trains: :func:`fit`.

One call trains ``model`` on a dataset with an :class:`~ekdcli.engine.objective.Objective`,
evaluates on the test split, and (on rank 0, when ``run_dir`` is given) keeps a run directory:
``config.toml``, ``environment.json``, ``metrics.jsonl``, ``run.log``, ``last.safetensors``,
``best.safetensors``, ``checkpoint.pt`` and, at the end, ``summary.json``; the trackers of the
run (:mod:`ekdcli.engine.tracking`) get the same records as they are written.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from ekdcli.engine import checkpoint, ddp
from ekdcli.engine.checkpoint import Progress, Resumable, make_payload, recipe_record, save_checkpoint
from ekdcli.engine.ema import WeightAverage
from ekdcli.engine.objective import Objective, StepOutput
from ekdcli.engine.options import EngineOptions
from ekdcli.engine.pipeline import Batch, make_batches
from ekdcli.engine.predict import evaluate_batches
from ekdcli.engine.progress import EpochProgress, echo, format_seconds, resolve_mode
from ekdcli.engine.recipe import Recipe, build_optimizer, build_scheduler, lr_factor
from ekdcli.engine.runtime import Runtime
from ekdcli.engine.tracking import Tracking
from ekdcli.sdk.contracts import FolderDataset, InMemoryDataset, RunInfo
from ekdcli.store import rundir
from ekdcli.store.rundir import RunWriter
from ekdcli.store.weights import non_finite
from ekdcli.util import transcript
from ekdcli.util.errors import JobError, UsageError

_DIVERGED_HINT = (
    "lower --lr, clip the gradients (--set train.grad_clip=5) or check the data and the teacher, and "
    "start a new run (a resumed run keeps its learning rate)"
)


@dataclass
class FitResult:
    """What a training run achieved; accuracies as fractions in [0, 1], epochs 1-based."""

    best_top1: float
    best_top5: float
    best_epoch: int
    last_top1: float
    last_top5: float
    epochs_run: int
    history: list[dict[str, Any]]
    run_dir: Path | None
    best_state: dict[str, torch.Tensor]
    last_state: dict[str, torch.Tensor]
    seconds: float = 0.0
    images_per_s: float = 0.0


def _seed_for(seed: int, stream: int, rank: int) -> int:
    """Distinct, reproducible seeds for the engine's generators (splitmix-style mixing)."""
    x = (seed * 0x9E3779B97F4A7C15 + stream * 0xBF58476D1CE4E5B9 + rank * 0x94D049BB133111EB) % 2**64
    x ^= x >> 31
    return x % 2**63


# ----------------------------------------------------------------- per-step scalars
class _StepScalars:
    """Per-step numbers read back without stalling the GPU.

    Each step's values are stacked into one small device tensor (all-reduced over ranks) and
    copied to pinned host memory behind a CUDA event; they are read one step later, when the copy
    has finished, so the host never waits for the step it just queued.  On the CPU they are read
    at once.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.queue: deque[tuple[Any, torch.Tensor, Any]] = deque()

    def push(self, meta: Any, values: torch.Tensor) -> None:
        if self.cuda:
            host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            host.copy_(values, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self.queue.append((meta, host, event))
        else:
            self.queue.append((meta, values, None))

    def ready(self, flush: bool = False) -> Iterator[tuple[Any, list[float]]]:
        keep = 0 if (flush or not self.cuda) else 1
        while len(self.queue) > keep:
            meta, host, event = self.queue.popleft()
            if event is not None:
                event.synchronize()
            yield meta, host.tolist()


class _Meters:
    """Epoch sums of the per-step values (already summed over ranks)."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        state = state or {}
        self.steps = int(state.get("steps", 0))
        self.images = int(state.get("images", 0))
        self.correct = float(state.get("correct", 0.0))
        self.correct5 = float(state.get("correct5", 0.0))
        self.scored = int(state.get("scored", 0))
        self.loss = float(state.get("loss", 0.0))
        self.losses: dict[str, float] = dict(state.get("losses", {}))
        self.stats: dict[str, float] = dict(state.get("stats", {}))
        self.train_seconds = float(state.get("train_seconds", 0.0))

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "images": self.images,
            "correct": self.correct,
            "correct5": self.correct5,
            "scored": self.scored,
            "loss": self.loss,
            "losses": dict(self.losses),
            "stats": dict(self.stats),
            "train_seconds": self.train_seconds,
        }


# ----------------------------------------------------------------- interruption
class _Interrupt:
    """Turns the first Ctrl-C into a flag checked between steps; a second one stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextmanager
    def installed(self) -> Iterator[_Interrupt]:
        main = threading.current_thread() is threading.main_thread()
        if main:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            if main:
                signal.signal(signal.SIGINT, self.previous)


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _sync_buffers(model: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BN statistics drift apart by the last local updates)."""
    if ddp.is_dist():
        for buffer in model.buffers():
            ddp.broadcast_(buffer.data)


# ----------------------------------------------------------------- the trainer
class Trainer:
    """One training run: model, objective, optimizer, data and run directory, stepped by :meth:`run`.

    :func:`fit` is the usual way in; benchmarks build one and call :meth:`step` themselves.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        dataset: InMemoryDataset | FolderDataset,
        objective: Objective,
        recipe: Recipe,
        options: EngineOptions,
        run_dir: Path | None,
        runtime: Runtime,
        metadata: dict[str, Any],
        tracking: Tracking | None = None,
    ) -> None:
        self.model = runtime.prepare_model(model)
        self.objective = objective
        self.recipe = recipe
        self.options = options
        self.run_dir, self.runtime, self.metadata = run_dir, runtime, metadata
        self.writer = RunWriter(run_dir, runtime.is_main)
        self.tracking = tracking if tracking and self.writer.run_dir else Tracking()  # rank 0 with a run dir
        self.verbose = runtime.is_main and not options.quiet
        seed, rank = options.seed, runtime.rank
        self.data_generator = torch.Generator().manual_seed(_seed_for(seed, 1, 0))
        self.aug_generator = runtime.generator(_seed_for(seed, 2, rank))
        if runtime.world_size > 1:
            torch.manual_seed(_seed_for(seed, 3, rank))  # distinct dropout masks per rank
        objective.setup(runtime, recipe.epochs)
        self.train_batches = make_batches(
            dataset,
            "train",
            runtime,
            recipe.batch_size,
            train=True,
            generator=self.data_generator,
            limit=options.limit_train,
            num_workers=options.num_workers,
        )
        self.test_batches = make_batches(
            dataset,
            "test",
            runtime,
            options.eval_batch_size,
            train=False,
            limit=options.limit_test,
            num_workers=options.num_workers,
        )
        self.steps_per_epoch = len(self.train_batches)
        self.extra_parameters = objective.parameters()  # after setup: on the device
        self.optimizer = build_optimizer(self.model, recipe, self.extra_parameters)
        self.scheduler = build_scheduler(self.optimizer, recipe, self.steps_per_epoch)
        self.ema = WeightAverage(self.model, recipe.ema) if recipe.ema else None
        self.train_model: torch.nn.Module = ddp.wrap(self.model, runtime.device)
        if options.compile:
            self.train_model = cast(torch.nn.Module, torch.compile(self.train_model))
        self.state = Progress()
        self.parts = self._resumable()
        self.best_state: dict[str, torch.Tensor] | None = None
        self.epoch_start_data_state: torch.Tensor | None = None
        self.meters_state: dict[str, Any] | None = None
        self.interrupt = _Interrupt()
        self.current_batch, self._progress_mode = 0, "none"

    # ------------------------------------------------------------- checkpoint
    def _resumable(self) -> Resumable:
        """The live parts the checkpoint saves and a resume loads back into."""
        rt = self.runtime
        return Resumable(
            self.model, self.optimizer, self.scheduler, rt.scaler, self.objective,
            self.data_generator, self.aug_generator, rt.device, rt.rank, rt.world_size, self.ema,
        )  # fmt: skip

    def _payload(self, epoch_start_data_state: torch.Tensor | None, meters: _Meters | None) -> dict[str, Any]:
        """Collective on all ranks (RNG states are gathered); only rank 0 uses the result."""
        return make_payload(
            self.parts,
            self.state,
            self.recipe,
            self.steps_per_epoch,
            epoch_start_data_state,
            meters.state_dict() if meters is not None else None,
            self.metadata,
        )

    def _save_checkpoint(self, payload: dict[str, Any]) -> None:
        if self.writer.run_dir is not None:  # rank 0 of a run with a directory
            save_checkpoint(self.writer.run_dir, payload)

    def resume(self) -> None:
        if self.run_dir is None:
            raise UsageError("resuming needs a run directory; pass --resume <run_dir>.")
        resumed = checkpoint.resume(self.run_dir, self.parts, self.recipe, self.steps_per_epoch)
        st = self.state = resumed.progress
        self.epoch_start_data_state = resumed.epoch_start_data_state
        self.meters_state = resumed.meters
        if resumed.best_state is not None:
            self.best_state = resumed.best_state
        # Metrics written after the checkpoint by a killed run are dropped with it.
        self.writer.metrics(st.history)
        if self.runtime.is_main:
            where = f"epoch {st.epoch}" + (f", step {st.batches_done} of the next" if st.batches_done else "")
            echo(f"resuming {self.run_dir} after {where}", show=self.verbose)

    # ------------------------------------------------------------- training
    def step(self, batch: Batch, epoch: int) -> tuple[torch.Tensor, StepOutput]:
        recipe, runtime = self.recipe, self.runtime
        with runtime.autocast():
            out = self.objective(self.train_model, batch, epoch, self.aug_generator)
        if not out.losses:
            raise UsageError("the objective returned no loss terms; it must return at least one.")
        total = torch.stack([v.float().reshape(()) for v in out.losses.values()]).sum()
        self.optimizer.zero_grad(set_to_none=True)
        scaler = runtime.scaler
        if scaler is not None:
            scaler.scale(total).backward()
        else:
            total.backward()
        if self.extra_parameters:  # DDP averages the model's gradients; the objective's are averaged here
            ddp.average_gradients(self.extra_parameters)
        if recipe.grad_clip is not None:
            if scaler is not None:
                scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(
                [*self.model.parameters(), *self.extra_parameters], recipe.grad_clip
            )
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return total, out

    def _step_values(
        self, total: torch.Tensor, out: StepOutput, batch: Batch
    ) -> tuple[list[str], torch.Tensor]:
        """One vector per step: [stop, total, losses..., stats..., top-1 and top-5 correct, scored],
        summed over ranks."""
        device = total.device
        names = [f"loss:{k}" for k in out.losses] + [f"stat:{k}" for k in out.stats]
        parts = [torch.tensor(float(self.interrupt.requested), device=device), total.detach()]
        parts += [v.detach().float().reshape(()) for v in out.losses.values()]
        parts += [torch.as_tensor(v, device=device).detach().float().reshape(()) for v in out.stats.values()]
        logits = out.logits
        if logits is not None and logits.shape[0] == batch.labels.shape[0]:
            top = logits.detach().topk(min(5, logits.shape[1]), dim=1).indices
            hits = top == batch.labels[:, None]
            parts.append(hits[:, 0].sum().float())
            parts.append(hits.any(dim=1).sum().float())
            parts.append(torch.tensor(float(batch.labels.shape[0]), device=device))
        else:
            parts += [torch.zeros((), device=device) for _ in range(3)]
        values = torch.stack(parts)
        return names, ddp.all_reduce_sum(values)

    def _absorb(
        self, meters: _Meters, meta: tuple[int, int, list[str]], values: list[float], epoch: int
    ) -> bool:
        """Add one step's values to the epoch sums; True when a stop was requested on any rank."""
        step_in_epoch, images, names = meta
        world = self.runtime.world_size
        stop, total = values[0], values[1]
        named = dict(zip(names, values[2:-3], strict=True))
        losses = {k[5:]: v / world for k, v in named.items() if k.startswith("loss:")}
        if not all(math.isfinite(v) for v in [total / world, *losses.values()]):
            terms = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
            raise JobError(
                f"non-finite loss at epoch {epoch} step {step_in_epoch} ({terms}); {self._kept()}; "
                f"{_DIVERGED_HINT}."
            )
        meters.steps += 1
        meters.images += images
        meters.loss += total / world
        for k, v in losses.items():
            meters.losses[k] = meters.losses.get(k, 0.0) + v
        for k, v in named.items():
            if k.startswith("stat:"):
                meters.stats[k[5:]] = meters.stats.get(k[5:], 0.0) + v
        meters.correct += values[-3]
        meters.correct5 += values[-2]
        meters.scored += int(values[-1])
        return stop > 0

    def train_epoch(self, epoch: int) -> _Meters:
        start_batch = self.state.batches_done
        if start_batch and self.epoch_start_data_state is not None:
            self.data_generator.set_state(self.epoch_start_data_state)
        epoch_start_state = self.data_generator.get_state()
        meters = _Meters(self.meters_state if start_batch else None)
        self.meters_state = None
        batches = self.train_batches.epoch(start_batch)
        total_batches = self.steps_per_epoch
        progress = EpochProgress(
            epoch, self.recipe.epochs, total_batches, self._progress_mode, start_batch=start_batch
        )
        scalars = _StepScalars(self.runtime.device)
        self.train_model.train()
        started = time.perf_counter()
        stop_requested = False
        batch_index = start_batch
        world = self.runtime.world_size
        try:
            for batch_index, batch in enumerate(batches, start=start_batch + 1):
                self.current_batch = batch_index
                total, out = self.step(batch, epoch)
                self.state.step += 1
                images = int(batch.labels.shape[0]) * world
                names, values = self._step_values(total, out, batch)
                scalars.push((batch_index, images, names), values)
                last_loss = None
                for meta, vals in scalars.ready():
                    stop_requested |= self._absorb(meters, meta, vals, epoch)
                    last_loss = vals[1] / world
                progress.update(batch_index, images, last_loss)
                # One process stops at once; ranks stop on the summed flag so they stop together.
                if stop_requested or (world == 1 and self.interrupt.requested):
                    break
            for meta, vals in scalars.ready(flush=True):
                stop_requested |= self._absorb(meters, meta, vals, epoch)
        finally:
            progress.close()
        meters.train_seconds += time.perf_counter() - started
        if stop_requested or (world == 1 and self.interrupt.requested):
            self._save_interrupted(epoch, batch_index, epoch_start_state, meters)
        return meters

    def _save_interrupted(
        self, epoch: int, batch_index: int, epoch_start: torch.Tensor, meters: _Meters
    ) -> None:
        self.state.batches_done = batch_index
        payload = self._payload(epoch_start, meters)
        self._save_checkpoint(payload)
        ddp.barrier()
        where = f"interrupted at epoch {epoch} step {batch_index}"
        if self.run_dir is None:
            raise JobError(f"{where}; nothing was saved because the run has no directory.")
        raise JobError(f"{where}; resume with --resume {self.run_dir}")

    def _kept(self) -> str:
        """What a run that stops now leaves behind (its last checkpoint was written at an epoch end)."""
        if self.run_dir is None:
            return "nothing was saved (no run directory)"
        if self.state.epoch:
            return f"the checkpoint of epoch {self.state.epoch} in {self.run_dir} is intact"
        return "no checkpoint was written yet"

    def _check_finite_weights(self, epoch: int) -> None:
        """Stop a diverged run before it saves anything: finite weights or nothing."""
        bad = non_finite(self.model.state_dict())
        if bad:
            raise JobError(
                f"training diverged at epoch {epoch}: {len(bad)} weight tensor(s) hold NaN or infinite "
                f"values (first {bad[0]}), so nothing of this epoch was saved; {self._kept()}; "
                f"{_DIVERGED_HINT}."
            )

    # ------------------------------------------------------------- epochs
    def end_epoch(self, epoch: int, meters: _Meters, started: float) -> dict[str, Any]:
        st = self.state
        _sync_buffers(self.model)
        self._check_finite_weights(epoch)
        last_epoch = epoch == self.recipe.epochs
        evaluation = None
        if epoch % self.recipe.eval_every == 0 or last_epoch:
            desc = f"epoch {epoch}/{self.recipe.epochs} test" if self._progress_mode != "none" else None
            evaluation = evaluate_batches(self._kept_model(), self.test_batches, self.runtime, desc)
        steps = max(meters.steps, 1)
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": st.step,
            "lr": self.recipe.lr
            * lr_factor(self.recipe, (epoch - 1) * self.steps_per_epoch, self.steps_per_epoch),
            "loss": meters.loss / steps,
            "losses": {k: v / steps for k, v in meters.losses.items()},
            "stats": dict(meters.stats),
            "images_per_s": meters.images / max(meters.train_seconds, 1e-9),
        }
        if meters.scored:
            record["train_top1"] = meters.correct / meters.scored
            record["train_top5"] = meters.correct5 / meters.scored
        improved = False
        if evaluation is not None:
            record.update(
                test_top1=evaluation["top1"], test_top5=evaluation["top5"], test_loss=evaluation["loss"]
            )
            st.last_top1, st.last_top5 = evaluation["top1"], evaluation["top5"]
            if evaluation["top1"] > st.best_top1:
                improved = True
                st.best_top1, st.best_top5, st.best_epoch = evaluation["top1"], evaluation["top5"], epoch
        record["seconds"] = time.perf_counter() - started
        st.epoch, st.batches_done = epoch, 0
        st.history.append(record)
        weights = _cpu_state(self._kept_model())
        if improved:
            self.best_state = weights
        payload = self._payload(None, None)  # collective: every rank takes part
        meta = {**self.metadata, "epoch": epoch}
        if evaluation is not None:  # accuracy of these very weights
            meta.update(top1=evaluation["top1"], top5=evaluation["top5"])
        self.writer.metrics(st.history)
        self.tracking.log_epoch(record)
        self.writer.weights("last", weights, meta)
        if improved:
            self.writer.weights("best", weights, meta)
        self._save_checkpoint(payload)
        return record

    def _kept_model(self) -> torch.nn.Module:
        """What is evaluated and stored: the weights' moving average with ``ema``, else the model."""
        return self.ema.model if self.ema is not None else self.model

    def _print_epoch(self, record: dict[str, Any]) -> None:
        if not self.runtime.is_main:
            return
        text = f"epoch {record['epoch']}/{self.recipe.epochs}  loss {record['loss']:.4f}"
        if "train_top1" in record:
            text += f"  train {100 * record['train_top1']:.2f}%"
        if "test_top1" in record:
            text += f"  test top-1 {100 * record['test_top1']:.2f}% top-5 {100 * record['test_top5']:.2f}%"
        if "augmented" in record["stats"]:  # samples an augmentation mixed this epoch (HE-DA & co)
            text += f"  mixed {record['stats']['augmented']:.0f}"
        text += f"  lr {record['lr']:.4g}  {record['images_per_s']:.0f} img/s  {record['seconds']:.1f} s"
        echo(text, show=self.verbose)

    def _print_header(self) -> None:
        if not self.runtime.is_main:
            return
        rt = self.runtime
        parallel = f", {rt.world_size} processes" if rt.world_size > 1 else ""
        threads = f", {rt.num_threads} threads" if rt.device.type == "cpu" else ""
        # the job prints the recipe and the run directory once; these lines are for --verbose and run.log
        echo(f"training on {rt.device} ({rt.precision}{threads}{parallel})", show=self.verbose)
        echo(
            f"{self.recipe.epochs} epoch{'s' if self.recipe.epochs != 1 else ''} x {self.steps_per_epoch} steps, batch {self.recipe.batch_size}, "
            f"lr {self.recipe.lr} ({self.recipe.schedule}), run dir {self.run_dir or '(none)'}",
            show=self.verbose,
        )
        if self.tracking:
            echo(f"tracking with {', '.join(self.tracking.names)}", show=self.verbose)

    def _start_tracking(self, resumed_after: int | None) -> None:
        """The run's trackers start once its config.toml is written; energy groups follow."""
        run_dir = self.writer.run_dir
        if not self.tracking or run_dir is None:
            return
        self.tracking.start(
            RunInfo(
                name=run_dir.name,
                run_dir=run_dir,
                command=self.tracking.command,
                config=rundir.read_config(run_dir),
                config_text=(run_dir / rundir.CONFIG).read_text(encoding="utf-8"),
                store=self.tracking.store or run_dir.parent,
                tracking_uri=self.tracking.tracking_uri,
                resumed_after_epoch=resumed_after,
            )
        )
        groups = self.tracking.energy_groups() if self.tracking.energy_groups is not None else None
        if groups:
            self.tracking.log_energy(groups)

    def run(self, config_text: str, resume: bool, stop_after_epoch: int | None) -> FitResult:
        with transcript.recording(reuse=True) as log:  # the job's, if a job runs us: for run.log
            if resume:
                self.resume()
            elif self.run_dir is not None and checkpoint.exists(self.run_dir):
                raise UsageError(
                    f"{self.run_dir} already holds a run; resume it with --resume or choose another --run-name."
                )
            environment = {
                **self.runtime.describe(),
                "resumed_after_epoch": self.state.epoch if resume else None,
            }
            self.writer.start(config_text, environment)
            try:
                self._start_tracking(environment["resumed_after_epoch"])
            except BaseException:
                if not resume:  # a refused tracker leaves no half run directory behind
                    self.writer.discard_start()
                raise
            self.writer.log(log)  # after the trackers started: run.log holds every line said so far
            self._progress_mode = resolve_mode(
                self.options.progress, self.options.quiet, self.runtime.is_main
            )
            self._print_header()
            return self._epochs(stop_after_epoch)

    def _epochs(self, stop_after_epoch: int | None) -> FitResult:
        epochs_run = 0
        with self.interrupt.installed():
            for epoch in range(self.state.epoch + 1, self.recipe.epochs + 1):
                started = time.perf_counter()
                try:
                    meters = self.train_epoch(epoch)
                except KeyboardInterrupt as exc:  # a second Ctrl-C, mid-step: keep the last checkpoint
                    raise JobError(
                        f"interrupted at epoch {epoch} step {self.current_batch}; resume with --resume "
                        f"{self.run_dir} (it restarts from the last saved checkpoint)"
                    ) from exc
                record = self.end_epoch(epoch, meters, started)
                self._print_epoch(record)
                epochs_run += 1
                if stop_after_epoch is not None and epoch >= stop_after_epoch:
                    break
        result = self._result(epochs_run)
        if self.state.epoch == self.recipe.epochs:
            self.writer.summary(self._summary(result))
        ddp.barrier()
        return result

    def _result(self, epochs_run: int) -> FitResult:
        st = self.state
        last = _cpu_state(self._kept_model())
        seconds = sum(r.get("seconds", 0.0) for r in st.history)
        images = [r["images_per_s"] for r in st.history if "images_per_s" in r]
        return FitResult(
            best_top1=st.best_top1 if st.best_epoch else math.nan,
            best_top5=st.best_top5 if st.best_epoch else math.nan,
            best_epoch=st.best_epoch,
            last_top1=st.last_top1,
            last_top5=st.last_top5,
            epochs_run=epochs_run,
            history=list(st.history),
            run_dir=self.run_dir,
            best_state=self.best_state if self.best_state is not None else last,
            last_state=last,
            seconds=seconds,
            images_per_s=sum(images) / len(images) if images else 0.0,
        )

    def _summary(self, result: FitResult) -> dict[str, Any]:
        rt = self.runtime
        return {
            "best_top1": result.best_top1,
            "best_top5": result.best_top5,
            "best_epoch": result.best_epoch,
            "last_top1": result.last_top1,
            "last_top5": result.last_top5,
            "epochs": self.recipe.epochs,
            "seconds": result.seconds,
            "duration": format_seconds(result.seconds),
            "images_per_s": result.images_per_s,
            "objective": self.objective.describe(),
            "recipe": recipe_record(self.recipe),
            "precision": rt.precision,
            "device": str(rt.device),
            "device_name": rt.describe()["device_name"],
            "world_size": rt.world_size,
            "metadata": self.metadata,
        }


def fit(
    model: torch.nn.Module,
    dataset: InMemoryDataset | FolderDataset,
    objective: Objective,
    recipe: Recipe,
    options: EngineOptions,
    run_dir: Path | None,
    *,
    config_text: str = "",
    metadata: dict[str, Any] | None = None,
    resume: bool = False,
    stop_after_epoch: int | None = None,
    runtime: Runtime | None = None,
    tracking: Tracking | None = None,
) -> FitResult:
    """Train ``model`` with ``objective`` following ``recipe``; see the module docstring for files.

    ``run_dir=None`` writes nothing (benchmarks).  ``resume=True`` continues the run saved in
    ``run_dir``; on the CPU with a fixed seed the result is bitwise identical to an uninterrupted
    run.  ``stop_after_epoch=k`` returns after epoch k as a kill would (no summary).  ``runtime``
    reuses an already resolved runtime (build it before the model so its seed fixes the init).
    ``tracking`` gets the run's start, energy groups and epochs (on rank 0); whoever made it
    finishes it (the jobs do, after drawing the run's curves).

    Raises JobError on a non-finite loss (the previous checkpoint is kept) and on Ctrl-C (after
    the current step, with a checkpoint that resumes mid-epoch).
    """
    recipe.validate()
    options.validate()
    runtime = runtime or Runtime(options)
    run_dir = Path(run_dir) if run_dir is not None else None
    if resume and run_dir is None:
        raise UsageError("resuming needs a run directory; pass --resume <run_dir>.")
    trainer = Trainer(
        model, dataset, objective, recipe, options, run_dir, runtime, dict(metadata or {}), tracking
    )
    return trainer.run(config_text, resume, stop_after_epoch)

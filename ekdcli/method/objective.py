"""The distillation step: teacher, distiller and (optional) augmentation composed into one objective.

Per batch, each model runs once:

* the augmentation selects rows (static: by sample index; online: by the
  energies of the teacher's logits on the clean batch) and mixes them;
* ``extra`` mode appends the mixed rows to the batch, ``replace`` mode swaps
  them in (DESIGN §1);
* the teacher (eval mode, no gradients) and the student see that batch once;
* the distiller's loss uses the clean rows, the augmentation's loss the mixed rows.

With ``online`` selection the teacher must see the clean batch before the
mix is known; it then runs again on the mixed rows only.

With a :class:`~ekdcli.method.teacher_cache.TeacherCache`, the teacher's logits of clean rows come from
the cache where it holds that (sample, crop/flip view); the teacher runs once on the misses plus
the mixed rows (which are never cached).  Online energies use the cached clean logits too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ekdcli.engine import Batch, StepOutput
from ekdcli.sdk.contracts import Augmentation, DistillBatch, Distiller, EnergyContext
from ekdcli.sdk.energy import energy

if TYPE_CHECKING:
    from ekdcli.engine import Runtime
    from ekdcli.method.teacher_cache import TeacherCache


class DistillObjective:
    """An engine objective that distills ``teacher`` into the trained model."""

    def __init__(
        self,
        teacher: torch.nn.Module | None,
        distiller: Distiller,
        augmentation: Augmentation | None = None,
        energy_context: EnergyContext | None = None,
        teacher_cache: TeacherCache | None = None,
    ) -> None:
        if distiller.needs_teacher and teacher is None:
            raise ValueError(f"distiller {distiller.name!r} needs a teacher")
        self.teacher = teacher
        self.teacher_cache = teacher_cache if teacher is not None else None
        self.distiller = distiller
        self.augmentation = augmentation
        self.energy_context = energy_context
        self._term_names: tuple[str, ...] = ()
        self._online = bool(
            augmentation is not None
            and augmentation.needs_energy
            and augmentation.describe().get("source") == "online"
        )

    def setup(self, runtime: Runtime, num_epochs: int = 1) -> None:
        if self.teacher is not None:
            self.teacher.to(runtime.device)
            if runtime.channels_last:
                self.teacher.to(memory_format=torch.channels_last)
            self.teacher.eval()
            for parameter in self.teacher.parameters():
                parameter.requires_grad_(False)
        if self.teacher_cache is not None:
            self.teacher_cache.setup(runtime)
        context = self.energy_context
        if context is not None:
            context = EnergyContext(
                energies=context.energies.to(runtime.device),
                energy_temperature=context.energy_temperature,
                fingerprint=context.fingerprint,
            )
            self.energy_context = context
        self.distiller.setup(context if self.distiller.needs_energy else None, num_epochs)
        if self.augmentation is not None:
            self.augmentation.setup(context if self.augmentation.needs_energy else None)

    def describe(self) -> dict[str, Any]:
        described = {"distiller": self.distiller.describe()}
        if self.augmentation is not None:
            described["augmentation"] = self.augmentation.describe()
        if self.energy_context is not None:
            described["score_fingerprint"] = self.energy_context.fingerprint
        return described

    @torch.no_grad()
    def _teach(self, images: torch.Tensor) -> torch.Tensor:
        return self.teacher(images)

    def _teach_clean(
        self, batch: Batch, rows: torch.Tensor | None = None, extra: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher logits of the clean batch rows ``rows`` (all when None) through the cache, and
        of the ``extra`` (mixed) images, in one teacher call.  Needs a cache and batch views."""
        cache = self.teacher_cache
        assert cache is not None and batch.views is not None
        images, indices, views = batch.images, batch.indices, batch.views
        if rows is not None:
            images, indices, views = images[rows], indices[rows], views[rows]
        before = cache.hits
        clean, mixed = cache.teach(self._teach, images, indices, views, extra)
        self._cache_hits += cache.hits - before
        return clean, mixed

    def __call__(
        self, model: torch.nn.Module, batch: Batch, epoch: int, generator: torch.Generator
    ) -> StepOutput:
        stats: dict[str, float] = {}
        cached = self.teacher_cache is not None and batch.views is not None
        self._cache_hits = 0
        output = self._step(model, batch, epoch, generator, stats, cached)
        if cached:
            output.stats["teacher_cache_hits"] = float(self._cache_hits)
        return output

    def _step(
        self,
        model: torch.nn.Module,
        batch: Batch,
        epoch: int,
        generator: torch.Generator,
        stats: dict[str, float],
        cached: bool,
    ) -> StepOutput:
        images, labels, indices = batch.images, batch.labels, batch.indices
        if self.augmentation is None or self.teacher is None:
            if self.teacher is None:
                teacher_logits = None
            elif cached:
                teacher_logits = self._teach_clean(batch)[0]
            else:
                teacher_logits = self._teach(images)
            student_logits = model(images)
            losses = self.distiller(
                DistillBatch(student_logits, teacher_logits, labels, indices, epoch, stats)
            )
            self._term_names = tuple(losses)
            return StepOutput(losses=losses, stats=stats, logits=student_logits)

        aug = self.augmentation
        clean_teacher = None
        online_energies = None
        if self._online:
            clean_teacher = self._teach_clean(batch)[0] if cached else self._teach(images)
            online_energies = energy(clean_teacher, self._energy_temperature())
        mask = aug.select(indices, online_energies)
        mix = aug.mix(images, labels, mask, generator)
        count = int(mix.rows.numel())
        stats["augmented"] = float(count)
        rows = images.shape[0]
        if aug.mode == "extra":
            seen = torch.cat([images, mix.images.to(images.dtype)])
            clean_rows = torch.arange(rows, device=images.device)
            mixed_rows = torch.arange(rows, rows + count, device=images.device)
        else:
            seen = images.index_copy(0, mix.rows, mix.images.to(images.dtype))
            keep = torch.ones(rows, dtype=torch.bool, device=images.device)
            keep[mix.rows] = False
            clean_rows = keep.nonzero().squeeze(1)
            mixed_rows = mix.rows
        if clean_teacher is None and cached:  # clean rows from the cache, the mixed ones computed
            clean_teacher, mixed_teacher = self._teach_clean(batch, clean_rows, mix.images.to(images.dtype))
            teacher_logits = torch.empty(
                (seen.shape[0], clean_teacher.shape[1]), dtype=clean_teacher.dtype, device=images.device
            )
            teacher_logits[clean_rows] = clean_teacher
            if mixed_teacher is not None:
                teacher_logits[mixed_rows] = mixed_teacher.to(clean_teacher.dtype)
        elif clean_teacher is None:
            teacher_logits = self._teach(seen)
        else:  # online: the clean rows are known already; only the mixed ones are new
            mixed_teacher = self._teach(mix.images.to(images.dtype))
            teacher_logits = torch.empty(
                (seen.shape[0], clean_teacher.shape[1]), dtype=clean_teacher.dtype, device=images.device
            )
            teacher_logits[:rows] = clean_teacher
            teacher_logits[mixed_rows] = mixed_teacher.to(clean_teacher.dtype)
        student_logits = model(seen)
        if clean_rows.numel():
            losses = dict(
                self.distiller(
                    DistillBatch(
                        student_logits[clean_rows],
                        teacher_logits[clean_rows],
                        labels[clean_rows],
                        indices[clean_rows],
                        epoch,
                        stats,
                    )
                )
            )
            self._term_names = tuple(losses)
        else:  # replace mode at rate 1.0: every row is mixed; keep the terms (as zeros) for the logs
            zero = student_logits.float().sum() * 0.0
            losses = {name: zero for name in self._term_names}
        for name, value in aug.loss(
            student_logits[mixed_rows], teacher_logits[mixed_rows], mix, epoch
        ).items():
            losses[name] = value
        # extra mode keeps the whole clean batch in its first rows: training top-1 comes from them
        clean_logits = student_logits[:rows] if aug.mode == "extra" else None
        return StepOutput(losses=losses, stats=stats, logits=clean_logits)

    def _energy_temperature(self) -> float:
        if self.energy_context is not None:
            return self.energy_context.energy_temperature
        return 4.0

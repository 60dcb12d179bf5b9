"""The distillation step: teacher, distiller and (optional) augmentation composed into one objective.

Per batch, each model runs once:

* the augmentation selects rows (static: by sample index; online: by the
  energies of the teacher's logits on the clean batch) and mixes them;
* ``extra`` mode appends the mixed rows to the batch, ``replace`` mode swaps
  them in (:func:`ekdcli.sdk.mixing.apply_mix`);
* the teacher (eval mode, no gradients) and the student see that batch once;
* the distiller's loss uses the clean rows, the augmentation's loss the mixed rows.

With ``online`` selection the teacher must see the clean batch before the
mix is known; it then runs again on the mixed rows only.

With a :class:`~ekdcli.method.teacher_cache.TeacherCache`, the teacher's logits of clean rows come from
the cache where it holds that (sample, crop/flip view); the teacher runs once on the misses plus
the mixed rows (which are never cached).  Online energies use the cached clean logits too.

A distiller with ``needs_strong_view`` (MLKD) also gets the logits of a strongly augmented second
view of the batch, made on the device from the engine's generator
(:func:`ekdcli.engine.strong.strong_view`): the teacher sees it in the same call as the clean
rows, the student in a second forward pass (its batch-norm statistics per view, as the authors').
Such a distiller is not combined with an augmentation.

A feature distiller (``Distiller.features`` not empty) gets the intermediate tensors of the same
forward passes (``model(x, return_features=True)``, :mod:`ekdcli.method.features`) for exactly
the rows of its logits; nothing runs twice.  Its teacher features come from a real teacher pass,
so it does not take a teacher cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch

from ekdcli.engine import Batch, Objective, StepOutput, ddp
from ekdcli.engine.strong import strong_view
from ekdcli.method.features import feature_rows, forward
from ekdcli.sdk.contracts import Augmentation, DistillBatch, Distiller, EnergyContext, Features
from ekdcli.sdk.energy import ENERGY_TEMPERATURE, energy
from ekdcli.sdk.mixing import MixedBatch, apply_mix

if TYPE_CHECKING:
    from ekdcli.engine import Runtime
    from ekdcli.method.teacher_cache import TeacherCache


class DistillObjective(Objective):
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
        if distiller.needs_strong_view and augmentation is not None:
            raise ValueError(
                f"distiller {distiller.name!r} makes its own strong view; it takes no augmentation"
            )
        if distiller.features and teacher_cache is not None:
            raise ValueError(
                f"distiller {distiller.name!r} reads the teacher's features; a cache holds logits only"
            )
        self.teacher = teacher
        self.teacher_cache = teacher_cache if teacher is not None else None
        self.kinds = tuple(distiller.features)  # what the forward passes return besides the logits
        self.distiller = distiller
        self.augmentation = augmentation
        self.energy_context = energy_context
        self._term_names: tuple[str, ...] = ()
        self._generator: torch.Generator | None = None
        self._online = augmentation is not None and augmentation.summary().energy_source == "online"

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
        self.distiller.to(runtime.device)
        if ddp.is_dist():  # every rank starts from rank 0's trainable state (as DDP does for the model)
            for tensor in self.distiller.parameters():
                ddp.broadcast_(tensor.data)
        if self.augmentation is not None:
            self.augmentation.setup(context if self.augmentation.needs_energy else None)

    def parameters(self) -> list[torch.Tensor]:
        return self.distiller.parameters()

    def state_dict(self) -> dict[str, Any]:
        state = self.distiller.state_dict()
        return {"distiller": state} if state else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "distiller" in state:
            self.distiller.load_state_dict(state["distiller"])

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"distiller": self.distiller.describe()}
        if self.augmentation is not None:
            described["augmentation"] = self.augmentation.describe()
        if self.energy_context is not None:
            described["score_fingerprint"] = self.energy_context.fingerprint
        return described

    def energy_groups(self) -> dict[str, Any] | None:
        """The energy thresholds, group sizes and temperatures the distiller's rule (and the
        augmentation) settled on in ``setup``, for the run's trackers; None without energies."""
        if self.energy_context is None:
            return None
        rule = self.distiller.summary().rule
        groups: dict[str, Any] = {}
        if rule is not None and rule.groups is not None:
            found = rule.groups
            for key, value in (
                ("thresholds", found.thresholds),
                ("temperatures", rule.temperatures),
                ("segment_edges", found.segment_edges),
                ("group_sizes", found.sizes),
            ):
                if value:
                    groups[key] = value
        mixed = self.augmentation.summary().groups if self.augmentation is not None else None
        if mixed is not None and mixed.thresholds:
            groups["augmentation_thresholds"] = mixed.thresholds
        if mixed is not None and mixed.selected_fraction is not None:
            groups["augmentation_selected_fraction"] = mixed.selected_fraction
        return groups or None

    @torch.no_grad()
    def _teach(self, images: torch.Tensor) -> torch.Tensor:
        assert self.teacher is not None
        return cast("torch.Tensor", self.teacher(images))

    @torch.no_grad()
    def _teach_seen(self, images: torch.Tensor) -> tuple[torch.Tensor, Features | None]:
        """Teacher logits of ``images`` and, for a feature distiller, the features of the same pass."""
        if not self.kinds:
            return self._teach(images), None
        assert self.teacher is not None
        logits, features = forward(self.teacher, images, self.kinds)
        return cast("torch.Tensor", logits), features

    def _student(self, model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, Features | None]:
        """Student logits of ``images`` and, for a feature distiller, the features of the same pass."""
        logits, features = forward(model, images, self.kinds)
        return cast("torch.Tensor", logits), features

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
        stats: dict[str, float | torch.Tensor] = {}
        cached = self.teacher_cache is not None and batch.views is not None
        self._cache_hits = 0
        self._generator = generator  # handed to the distiller (DistillBatch.generator)
        if self.augmentation is None or self.teacher is None:
            output = self._plain_step(model, batch, epoch, generator, stats, cached)
        else:
            output = self._mixed_step(model, batch, epoch, generator, stats, cached)
        if cached:
            output.stats["teacher_cache_hits"] = float(self._cache_hits)
        return output

    def _clean_teacher(self, batch: Batch, cached: bool) -> tuple[torch.Tensor, Features | None]:
        """Teacher logits (and features) of the whole clean batch (through the cache when there is one)."""
        return (self._teach_clean(batch)[0], None) if cached else self._teach_seen(batch.images)

    def _distill(
        self,
        student: torch.Tensor,
        teacher: torch.Tensor | None,
        batch: Batch,
        rows: torch.Tensor | None,
        epoch: int,
        stats: dict[str, float | torch.Tensor],
        features: tuple[Features | None, Features | None] = (None, None),
    ) -> dict[str, torch.Tensor]:
        """The distiller's loss terms on ``rows`` of the logits (all rows when None); ``features``
        (student's, teacher's) are of the same rows as the logits before the selection."""
        labels, indices = batch.labels, batch.indices
        if rows is not None:
            student, labels, indices = student[rows], labels[rows], indices[rows]
            teacher = teacher[rows] if teacher is not None else None
        distill_batch = DistillBatch(
            student,
            teacher,
            labels,
            indices,
            epoch,
            stats,
            student_features=feature_rows(features[0], rows),
            teacher_features=feature_rows(features[1], rows),
            generator=self._generator,
        )
        losses = dict(self.distiller(distill_batch))
        self._term_names = tuple(losses)
        return losses

    def _plain_step(
        self,
        model: torch.nn.Module,
        batch: Batch,
        epoch: int,
        generator: torch.Generator,
        stats: dict[str, float | torch.Tensor],
        cached: bool,
    ) -> StepOutput:
        if self.distiller.needs_strong_view:
            return self._two_view_step(model, batch, epoch, generator, stats, cached)
        teacher_logits, teacher_features = (
            self._clean_teacher(batch, cached) if self.teacher is not None else (None, None)
        )
        student_logits, student_features = self._student(model, batch.images)
        features = (student_features, teacher_features)
        losses = self._distill(student_logits, teacher_logits, batch, None, epoch, stats, features)
        return StepOutput(losses=losses, stats=stats, logits=student_logits)

    def _two_view_step(
        self,
        model: torch.nn.Module,
        batch: Batch,
        epoch: int,
        generator: torch.Generator,
        stats: dict[str, float | torch.Tensor],
        cached: bool,
    ) -> StepOutput:
        """The clean batch and a strong view of it: the teacher once on both, the student twice
        (features, for a distiller that reads them, of the clean view)."""
        strong = strong_view(batch, generator)
        rows = batch.images.shape[0]
        teacher_features = None
        if cached:
            teacher_logits, strong_teacher = self._teach_clean(batch, None, strong)
        else:
            both, both_features = self._teach_seen(torch.cat([batch.images, strong]))
            teacher_logits, strong_teacher = both[:rows], both[rows:]
            clean_rows = torch.arange(rows, device=both.device) if both_features is not None else None
            teacher_features = feature_rows(both_features, clean_rows)
        student_logits, student_features = self._student(model, batch.images)
        strong_student = model(strong)
        distill_batch = DistillBatch(
            student_logits,
            teacher_logits,
            batch.labels,
            batch.indices,
            epoch,
            stats,
            strong_student,
            strong_teacher,
            student_features,
            teacher_features,
            generator,
        )
        losses = dict(self.distiller(distill_batch))
        self._term_names = tuple(losses)
        return StepOutput(losses=losses, stats=stats, logits=student_logits)

    def _mixed_step(
        self,
        model: torch.nn.Module,
        batch: Batch,
        epoch: int,
        generator: torch.Generator,
        stats: dict[str, float | torch.Tensor],
        cached: bool,
    ) -> StepOutput:
        aug = self.augmentation
        assert aug is not None
        clean_teacher = online_energies = clean_features = None
        if self._online:  # the selection needs the clean batch's energies before anything is mixed
            clean_teacher, clean_features = self._clean_teacher(batch, cached)
            online_energies = energy(clean_teacher, self._energy_temperature())
        mask = aug.select(batch.indices, online_energies)
        mix = aug.mix(batch.images, batch.labels, mask, generator)
        stats["augmented"] = float(mix.rows.numel())
        seen = apply_mix(batch.images, mix, aug.mode)
        teacher_logits, seen_features = self._mixed_teacher(batch, seen, clean_teacher, cached)
        if clean_features is not None:  # the clean pass's: a clean row of `seen` is that row of the batch
            seen_features = clean_features
        student_logits, student_features = self._student(model, seen.images)
        if seen.clean_rows.numel():
            features = (student_features, seen_features)
            losses = self._distill(
                student_logits, teacher_logits, batch, seen.clean_rows, epoch, stats, features
            )
        else:  # replace mode at rate 1.0: every row is mixed; keep the terms (as zeros) for the logs
            zero = student_logits.float().sum() * 0.0
            losses = {name: zero for name in self._term_names}
        rows = seen.mixed_rows
        losses.update(aug.loss(student_logits[rows], teacher_logits[rows], mix, epoch))
        # extra mode keeps the whole clean batch in its first rows: training top-1 comes from them
        clean_logits = student_logits[: batch.images.shape[0]] if aug.mode == "extra" else None
        return StepOutput(losses=losses, stats=stats, logits=clean_logits)

    def _mixed_teacher(
        self, batch: Batch, seen: MixedBatch, clean: torch.Tensor | None, cached: bool
    ) -> tuple[torch.Tensor, Features | None]:
        """Teacher logits of every row the models see, each computed once (and, for a feature
        distiller without online selection, the features of that one pass).

        Online selection already has the clean batch's logits: only the mixed rows are new.  With
        the cache the clean rows come from it and the mixed ones are computed in the same call.
        """
        if clean is None and not cached:
            return self._teach_seen(seen.images)
        mixed_images = seen.images[seen.mixed_rows]
        if clean is None:
            clean, mixed = self._teach_clean(batch, seen.clean_rows, mixed_images)
            clean_rows = seen.clean_rows
        else:
            mixed = self._teach(mixed_images)
            clean_rows = torch.arange(batch.images.shape[0], device=clean.device)
        out = torch.empty((seen.images.shape[0], clean.shape[1]), dtype=clean.dtype, device=clean.device)
        out[clean_rows] = clean
        if mixed is not None:
            out[seen.mixed_rows] = mixed.to(clean.dtype)
        return out, None

    def _energy_temperature(self) -> float:
        if self.energy_context is not None:
            return self.energy_context.energy_temperature
        return ENERGY_TEMPERATURE

"""Contracts between the core and plugins: datasets, distillers, temperature rules, augmentations,
trackers, campaign executors.

Importing this module does not import torch; tensors appear only in type hints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ekdcli.util.text import flatten as flatten  # re-exported: ekdcli.sdk.flatten

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset as TorchDataset


# --------------------------------------------------------------------------- data
@dataclass
class InMemoryDataset:
    """A dataset small enough to live as one uint8 tensor (CIFAR, digits, fake).

    Images are ``uint8 [N, C, H, W]``; labels ``int64 [N]``.  The sample index
    (position in ``train_images``) is stable and keys energy scores.
    The engine moves the tensors to the device and augments there
    (random crop with ``crop_padding`` zero padding, horizontal flip, normalize).
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 4
    hflip: bool = True
    info: dict[str, Any] = field(default_factory=dict)  # e.g. long-tailed class counts

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])

    def labels(self, split: str = "train") -> torch.Tensor:
        return self.train_labels if split == "train" else self.test_labels

    def fingerprint(self, split: str = "train") -> str:
        """Identity of a split for score files: its size and a hash of its labels."""
        return labels_fingerprint(self.labels(split).tolist())

    def split(self, split: str = "train") -> TorchDataset:
        """A torch Dataset yielding ``(normalized float image, label, index)``, no augmentation."""
        from ekdcli.sdk.splits import TensorSplit

        images = self.train_images if split == "train" else self.test_images
        return TensorSplit(images, self.labels(split), self.mean, self.std)


@dataclass
class FolderDataset:
    """A dataset read from disk by DataLoader workers (ImageNet-style folders).

    Each split is a torch Dataset yielding ``(float image, label, index)``;
    ``train`` applies the training transforms, ``train_eval`` yields the same
    samples in the same order with the evaluation transform (for scoring).
    """

    name: str
    train: TorchDataset
    train_eval: TorchDataset
    test: TorchDataset
    train_labels: list[int]
    test_labels: list[int]
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_channels: int = 3
    image_size: tuple[int, int] = (224, 224)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def labels(self, split: str = "train") -> list[int]:
        return self.train_labels if split == "train" else self.test_labels

    def fingerprint(self, split: str = "train") -> str:
        return labels_fingerprint(list(self.labels(split)))

    def split(self, split: str = "train") -> TorchDataset:
        return self.train_eval if split == "train" else self.test


Dataset = InMemoryDataset | FolderDataset


def labels_fingerprint(labels: list[int]) -> str:
    """``"<size>:<sha256 of the labels>"``: cheap, and changes with any relabel or resplit."""
    digest = hashlib.sha256(",".join(str(int(y)) for y in labels).encode()).hexdigest()
    return f"{len(labels)}:{digest[:16]}"


# ----------------------------------------------------------------------- features
# What ``model(x, return_features=True)`` returns besides the logits, at mdistiller's positions:
# ``feats`` (the stem's output, then each stage's), ``preact_feats`` (the same before each stage's
# last ReLU), ``pooled_feat`` (the globally pooled input of the classifier).
FEATURE_KINDS = ("feats", "preact_feats", "pooled_feat")
# Methods a model may offer for feature methods: ``get_bn_before_relu()`` (the batch norm before
# the last ReLU of each stage, OFD) and ``get_stage_channels()`` (the channels of ``feats``).
MODEL_HOOKS = ("bn_before_relu", "stage_channels")


@dataclass
class Features:
    """Intermediate tensors of one forward pass (teacher: no grad, eval mode; student: train mode)."""

    feats: list[torch.Tensor]
    preact_feats: list[torch.Tensor]
    pooled_feat: torch.Tensor | None  # None when the model gives none and the method reads none

    def pooled(self) -> torch.Tensor:
        """``pooled_feat``, which a method that lists it in its ``features`` always gets."""
        if self.pooled_feat is None:
            raise ValueError("no pooled feature: list 'pooled_feat' in the distiller's features")
        return self.pooled_feat

    def rows(self, rows: torch.Tensor) -> Features:
        """The same tensors for the batch rows ``rows`` only (an index tensor)."""
        pooled = self.pooled_feat[rows] if self.pooled_feat is not None else None
        return Features([f[rows] for f in self.feats], [f[rows] for f in self.preact_feats], pooled)


@dataclass
class PairContext:
    """What a distiller learns about the run before training (:meth:`Distiller.bind`).

    ``student`` and ``teacher`` are the models themselves (on the CPU, float32, before any
    training step; the teacher is trained and frozen), so a method can probe feature shapes with a
    forward pass or call ``get_bn_before_relu()`` / ``get_stage_channels()``.  ``train_size`` and
    ``train_labels`` describe the training samples the run actually uses (after ``--limit-train``
    or a long-tailed subset): sample indices in :class:`DistillBatch` run from 0 to
    ``train_size - 1``.
    """

    student: torch.nn.Module
    teacher: torch.nn.Module | None
    student_name: str
    teacher_name: str | None
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    train_size: int
    train_labels: torch.Tensor  # int64 [train_size], on the CPU
    world_size: int = 1


# ------------------------------------------------------------- typed summaries
# What the core may read of a plugin after it is built (and after ``setup``): typed, documented
# fields.  ``describe()`` stays the free-form record written to the run files; the core never
# reads its keys.


@dataclass
class EnergyGroups:
    """How the training set splits by teacher energy, as a component settled it in ``setup``.

    ``sizes``: training samples per group (``low``/``mid``/``high``, or ``segment0``... of a
    gradation); ``thresholds``: ``{"low": E_low, "high": E_high}`` (None where a bound is unused or
    infinite); ``segment_edges``: a gradation's energy edges; ``selected_fraction``: the share of
    the training set an augmentation mixes.
    """

    sizes: dict[str, int] | None = None
    thresholds: dict[str, Any] | None = None
    segment_edges: list[float] | None = None
    selected_fraction: float | None = None


@dataclass
class RuleSummary:
    """What a temperature rule tells the core (:meth:`TemperatureRule.summary`).

    ``text``: the rule in a few words (the run's header); ``temperatures``: the temperature of each
    group by name (a partition; ``{"all": t}`` for one temperature), or per energy segment from the
    lowest energy up (a gradation); ``energy_source``: ``"static"`` (the score file) or
    ``"online"`` (the batch), None when the rule reads no energies; ``rates``: the (low, high)
    rates of a partition and ``rate_source`` where they came from (``default``, ``rate``, a released
    pair's); ``groups``: after ``setup``, the energy groups (None before, or without energies).
    """

    text: str
    temperatures: dict[str, float] | list[float] = field(default_factory=dict)
    energy_source: str | None = None
    rates: tuple[float, float] | None = None
    rate_source: str | None = None
    groups: EnergyGroups | None = None


@dataclass
class LossSummary:
    """What a distiller tells the core (:meth:`Distiller.summary`): its loss in a few words and, for a
    temperature-based one, its rule's summary."""

    text: str
    rule: RuleSummary | None = None


@dataclass
class AugmentationSummary:
    """What an augmentation tells the core (:meth:`Augmentation.summary`).

    ``selection``: ``all``, ``random`` (a random share of each batch), ``high``, ``low`` or
    ``mixed`` (by energy); ``energy_source``: ``"static"``/``"online"`` for an energy selection,
    else None; ``rate``: the share it mixes; ``groups``: after ``setup``, its thresholds and the
    share of the training set it selects.
    """

    text: str
    selection: str = "all"
    energy_source: str | None = None
    rate: float | None = None
    groups: EnergyGroups | None = None


# --------------------------------------------------------------------- distillers
@dataclass
class DistillBatch:
    """What a distiller sees for one batch of (clean) training samples.

    Logits may be low precision; distillers cast to float32 before any
    softmax / log-softmax / logsumexp.  ``stats`` is a scratch dict whose
    numeric values the engine sums over the epoch and logs (e.g. how many
    samples got each temperature).
    """

    student_logits: torch.Tensor
    teacher_logits: torch.Tensor | None
    labels: torch.Tensor
    indices: torch.Tensor
    epoch: int  # 1-based
    stats: dict[str, float | torch.Tensor] = field(default_factory=dict)
    # Logits of a second, strongly augmented view of the same rows (same order), for a distiller
    # with ``needs_strong_view`` (MLKD); None otherwise.
    strong_student_logits: torch.Tensor | None = None
    strong_teacher_logits: torch.Tensor | None = None
    # Intermediate tensors of the same rows, for a distiller whose ``features`` name any; None otherwise.
    student_features: Features | None = None
    teacher_features: Features | None = None
    # The engine's seeded, checkpointed device generator, for a distiller that draws (CRD's negatives).
    generator: torch.Generator | None = None


@dataclass
class EnergyContext:
    """Per-sample teacher energies of the training set, from a score file."""

    energies: torch.Tensor  # float32 [N_train], indexed by sample index, on the device
    energy_temperature: float
    fingerprint: str  # of the score file (teacher + dataset)


class Distiller:
    """Base class of distillation methods; subclasses implement ``__call__``.

    A distiller with trainable state of its own (CTKD's temperature module) returns it from
    :meth:`parameters` after :meth:`to`: the engine optimizes it with the student (same optimizer,
    learning rate schedule and weight decay) and checkpoints :meth:`state_dict`.
    """

    name: str = "distiller"
    needs_teacher: bool = True
    needs_energy: bool = False  # True: the engine provides an EnergyContext via setup()
    # True: the engine also forwards a strongly augmented second view of each training image
    # (DistillBatch.strong_student_logits / strong_teacher_logits; docs/method.md#strong-views)
    needs_strong_view: bool = False
    # The entries of FEATURE_KINDS the method reads (DistillBatch.student_features/teacher_features)
    # and the MODEL_HOOKS it calls; both empty for a logit method.
    features: tuple[str, ...] = ()
    model_hooks: tuple[str, ...] = ()

    def bind(self, pair: PairContext) -> None:
        """Called once before :meth:`setup` with the models and the training set's facts: build the
        method's trainable modules here (connectors, regressors, embeddings, memory banks)."""

    def setup(self, energy: EnergyContext | None, num_epochs: int) -> None:
        """Called once before training (thresholds, partitions, schedules)."""

    def to(self, device: torch.device) -> None:
        """Move trainable state to the training device (called before :meth:`parameters`)."""

    def parameters(self) -> list[torch.Tensor]:
        """Trainable tensors outside the student (none by default)."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint besides the optimizer's (tensors, numbers, lists, dicts only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def describe(self) -> dict[str, Any]:
        """Everything needed to reproduce the loss; printed at start and stored in the run."""
        return {"method": self.name}

    def summary(self) -> LossSummary:
        """The typed facts the core reads (the run's header, the energy groups); see LossSummary."""
        return LossSummary(self.name)

    def __call__(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        """Named scalar loss terms; the engine sums them and logs each one."""
        raise NotImplementedError


# -------------------------------------------------------------- temperature rules
class TemperatureRule:
    """Per-sample distillation temperatures of a batch: ``fixed``, ``energy``, ``gradation``, ...

    A temperature-based distiller (:class:`TemperatureDistiller`) asks its rule once per batch
    with the teacher's logits of the batch, the rows' sample indices and a ``stats`` dict to count
    into.  ``needs_energy``: :meth:`setup` receives the score file's :class:`EnergyContext` (else
    ``None``).  ``reference`` is the temperature the rule is centred on (the base temperature);
    a distiller that scales a temperature of its own (CTKD's learned one) uses ``T_i / reference``.
    """

    name: str = "rule"
    needs_energy: bool = False
    reference: float = 4.0

    def setup(self, energy: EnergyContext | None) -> None:
        """Called once before training (thresholds of the whole training set)."""

    def __call__(
        self,
        teacher_logits: torch.Tensor | None,
        indices: torch.Tensor,
        stats: dict[str, float | torch.Tensor],
    ) -> float | torch.Tensor:
        """One temperature for the whole batch (a float), or a float32 ``[B]`` tensor on the
        logits' device; may add counts to ``stats`` (the engine sums and logs them)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Everything that decides a sample's temperature (printed at start, stored in the run)."""
        return {}

    def summary(self) -> RuleSummary:
        """The typed facts the core reads (temperatures per group, the energy source, the rates and,
        after :meth:`setup`, the energy groups); see :class:`RuleSummary`."""
        return RuleSummary(self.name, energy_source="static" if self.needs_energy else None)


class FeatureDistiller(Distiller):
    """A distiller with trainable modules of its own (connectors, regressors, CRD's embeddings).

    :meth:`bind` sets ``self.modules`` to one ``torch.nn.Module`` whose ``state_dict`` keys are the
    method's parameter and buffer names (mdistiller's, for its methods).  The engine moves it to
    the device, keeps it in train mode, optimizes its parameters with the student's (same
    optimizer, schedule and weight decay), averages their gradients under DDP and checkpoints its
    whole state (buffers included) for an exact resume.  It is never part of the student's
    stored or exported weights.
    """

    modules: torch.nn.Module | None = None

    def to(self, device: torch.device) -> None:
        if self.modules is not None:
            self.modules.to(device)
            self.modules.train()

    def parameters(self) -> list[torch.Tensor]:
        if self.modules is None:
            return []
        return [p for p in self.modules.parameters() if p.requires_grad]

    def state_dict(self) -> dict[str, Any]:
        return {"modules": dict(self.modules.state_dict())} if self.modules is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.modules is not None and "modules" in state:
            self.modules.load_state_dict(state["modules"])


class TemperatureDistiller(Distiller):
    """A distiller whose temperatures come from a :class:`TemperatureRule` (``--temperature-rule``).

    Subclasses call :meth:`temperatures` in ``__call__``; :meth:`setup` sets the rule up and the
    rule's description is part of :meth:`describe_rule`.
    """

    def __init__(self, rule: TemperatureRule) -> None:
        self.rule = rule

    @property
    def needs_energy(self) -> bool:  # type: ignore[override]
        """The rule's: a temperature-based distiller reads energies exactly when its rule does."""
        return self.rule.needs_energy

    def setup(self, energy: EnergyContext | None, num_epochs: int) -> None:
        self.rule.setup(energy)

    def temperatures(self, batch: DistillBatch) -> float | torch.Tensor:
        """The rule's temperatures of the batch (a float or a float32 ``[B]`` tensor)."""
        return self.rule(batch.teacher_logits, batch.indices, batch.stats)

    def describe_rule(self) -> dict[str, Any]:
        return {"temperature_rule": self.rule.name, **self.rule.describe()}

    def summary(self) -> LossSummary:
        """``<name>, <the rule in a few words>`` (and standardized logits where the method says so)."""
        rule = self.rule.summary()
        text = f"{self.name}, {rule.text}"
        if getattr(self, "logit_standardize", False):
            text += ", standardized logits"
        return LossSummary(text, rule)


# ------------------------------------------------------------------ augmentations
@dataclass
class MixResult:
    """Mixed images: ``lam * image + (1 - lam) * partner`` (CutMix: box area ratio)."""

    images: torch.Tensor  # [M, C, H, W]
    labels_a: torch.Tensor  # [M] labels of the base images
    labels_b: torch.Tensor  # [M] labels of the partners
    lam: torch.Tensor  # [M] float32, weight of labels_a
    rows: torch.Tensor  # [M] row in the input batch of each base image
    partner_rows: torch.Tensor  # [M] row in the input batch of each partner


class Augmentation:
    """A batch augmentation applied to a selected subset of a batch (HE-DA & co)."""

    name: str = "augmentation"
    mode: Literal["extra", "replace"] = "extra"
    needs_energy: bool = False

    def setup(self, energy: EnergyContext | None) -> None:
        """Called once before training (thresholds of the augmentation rate)."""

    def describe(self) -> dict[str, Any]:
        return {"augment": self.name, "mode": self.mode}

    def summary(self) -> AugmentationSummary:
        """The typed facts the core reads (which samples, from which energies, the energy groups)."""
        return AugmentationSummary(f"{self.name} ({self.mode} mode)")

    def select(self, indices: torch.Tensor, online_energies: torch.Tensor | None) -> torch.Tensor:
        """Boolean mask over the batch rows to augment."""
        raise NotImplementedError

    def mix(
        self, images: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, generator: torch.Generator
    ) -> MixResult:
        """Mix the rows where ``mask`` is true with partners from the same batch."""
        raise NotImplementedError

    def loss(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, mix: MixResult, epoch: int
    ) -> dict[str, torch.Tensor]:
        """Named loss terms on the mixed rows (released code: KD at the base temperature)."""
        raise NotImplementedError


# ----------------------------------------------------------------------- trackers
@dataclass
class RunInfo:
    """What a tracker learns when a run starts.

    ``config`` is the resolved configuration exactly as the run directory's ``config.toml``
    records it (``config_text`` is that file's text); ``params()`` flattens it for trackers
    that take flat string parameters.  ``resumed_after_epoch`` is set when ``--resume``
    continues the run (a tracker may continue its own record of it).
    """

    name: str  # the run directory's name
    run_dir: Path
    command: str  # "train" or "distill"
    config: dict[str, Any]
    config_text: str
    store: Path
    tracking_uri: str | None = None
    resumed_after_epoch: int | None = None

    def params(self) -> dict[str, str]:
        """The configuration as ``{"key" or "table.key": text}``: strings as they are, other values
        as JSON (``true``, ``0.05``, ``[150, 180]``)."""
        return {
            key: value if isinstance(value, str) else json.dumps(value)
            for key, value in flatten(self.config).items()
        }


def numbers(record: dict[str, Any], skip: tuple[str, ...] = ("epoch",)) -> dict[str, float]:
    """The finite numbers of an epoch record (or a summary), flattened; ``skip`` the step axis."""
    return {
        key: float(value)
        for key, value in flatten(record).items()
        if key not in skip
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    }


class Tracker:
    """An experiment tracker: receives the events of a training run (on rank 0 only).

    The events, in order: :meth:`start` once; :meth:`log_energy` once for runs whose method
    uses energies; :meth:`log_epoch` after every epoch; :meth:`finish` once, also when the run
    fails or stops early.  Override the ones you need.  Raise in ``start`` to refuse the run
    (``ekdcli.sdk.UsageError`` or ``JobError`` with one sentence saying what to do); an exception
    in a later event makes ekd warn once and stop calling this tracker, and training continues.
    """

    name: str = "tracker"

    def start(self, run: RunInfo) -> None:
        """The run begins: its directory and resolved configuration."""

    def log_energy(self, groups: dict[str, Any]) -> None:
        """Energy groups of the training set: ``thresholds`` (``low``/``high`` energies),
        ``group_sizes`` (training samples per group), ``temperatures`` per group, and the
        augmentation's ``augmentation_thresholds``, where the method has them."""

    def log_epoch(self, record: dict[str, Any]) -> None:
        """One finished epoch, the record ``metrics.jsonl`` holds (``epoch`` is 1-based;
        accuracies are fractions): ``numbers(record)`` gives its values flat."""

    def finish(self, status: str, summary: dict[str, Any] | None, artifacts: dict[str, Path]) -> None:
        """The run ended: ``status`` is ``finished``, ``stopped`` (before its last epoch) or
        ``failed``; ``summary`` is ``summary.json`` (None unless finished); ``artifacts`` names
        the files worth keeping (``best`` and ``last`` weights, ``curves``, ``log``, ``summary``)."""


# ---------------------------------------------------------------------- executors
@dataclass
class ExecTask:
    """One command of a campaign (a run, or a prerequisite such as a teacher or its scores).

    The executor runs ``python -m ekdcli <args>`` (``command(python)``) with ``env`` added to its
    environment and ``cwd`` as its directory where that exists, and appends its stdout and stderr
    to ``log``.  Every path in ``args`` and ``log`` is absolute; on a cluster they lie in the store,
    which every node must see at the same path.  ``processes`` is the number of data-parallel
    processes the task starts itself (``--nproc N``): it needs that many GPUs where there are GPUs.
    An executor that requeues a preempted or timed-out task runs ``resume_args`` instead of
    ``args`` once ``checkpoint`` exists (the task then continues where it stopped).
    """

    key: str  # unique among the tasks of one ``Executor.run`` call
    args: list[str]
    log: str
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    processes: int = 1
    resume_args: list[str] = field(default_factory=list)
    checkpoint: str | None = None

    def command(self, python: str) -> list[str]:
        return [python, "-m", "ekdcli", *self.args]

    def continued(self) -> ExecTask:
        """The task to run again after an interruption: from its checkpoint where it has one."""
        if self.resume_args and self.checkpoint and Path(self.checkpoint).is_file():
            return dataclasses.replace(self, args=list(self.resume_args))
        return self


@dataclass
class TaskOutcome:
    """How a task ended: its exit code and, when it failed, one line saying why."""

    key: str
    returncode: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Executor:
    """Runs the tasks of a campaign; built by ``factory(jobs=N, **options)`` (hook ``register_executors``).

    ``run`` starts every task, at most ``jobs`` at once, each in its own process (a crash of one
    never stops the others), and calls ``on_start(task)`` when a task starts and
    ``on_done(task, outcome)`` when it ends, both in the calling thread (the caller records the
    campaign's state there).  It returns when every task has ended.  On KeyboardInterrupt it stops
    its tasks and re-raises.  ``remote`` is true when tasks may run on other machines: the store
    must then be a path every node shares.
    """

    name: str = "executor"
    remote: bool = False

    def describe(self) -> str:
        """One line for the campaign header (where and how many at once)."""
        return self.name

    def check(self) -> None:
        """Refuse (``UsageError``, one sentence) what cannot work, quickly and before the sweep
        writes anything: an unreachable cluster, a missing scheduler.  Default: nothing to check."""

    def run(
        self,
        tasks: Sequence[ExecTask],
        on_start: Callable[[ExecTask], None],
        on_done: Callable[[ExecTask, TaskOutcome], None],
    ) -> None:
        raise NotImplementedError

"""Score tables: one teacher energy per training sample, saved with what made them (docs/method.md#scoring).

A score file is a safetensors file holding ``energies``, ``labels``,
``predictions``, ``confidence`` (and optionally the teacher ``logits``) plus
metadata naming the teacher weights (sha256) and the dataset (size + labels
hash).  Scores made with another teacher or dataset are refused by
:func:`check_compatible`.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.sdk.energy import ENERGY_TEMPERATURE, compute_thresholds, energy
from ekdcli.sdk.options import both_sides_rate
from ekdcli.util.errors import UsageError

if TYPE_CHECKING:
    import torch

SCORE_FORMAT = "ekd-scores"
SCORE_FORMAT_VERSION = 1
# Keep teacher logits in the score file by default only below this many values (CIFAR-100: 5M).
KEEP_LOGITS_MAX_VALUES = 10_000_000
_TENSOR_KEYS = ("energies", "labels", "predictions", "confidence")


@dataclass
class ScoreMeta:
    """Where a score table came from; stored as the score file's metadata."""

    teacher: str
    teacher_sha256: str
    dataset: str
    dataset_fingerprint: str
    energy_temperature: float
    created: str  # UTC, ISO 8601
    ekd_version: str
    extra: dict[str, Any] = field(default_factory=dict)
    # The file scores only the first ``limit_train`` training samples (--limit-train); None: all.
    # ``dataset_fingerprint`` is always the whole training split's.
    limit_train: int | None = None

    @property
    def fingerprint(self) -> str:
        """Short identity of (teacher weights, dataset, T_E[, subset]): partitions and runs record it."""
        key = f"{self.teacher_sha256}|{self.dataset_fingerprint}|{float(self.energy_temperature)!r}"
        if self.limit_train is not None:
            key += f"|first {self.limit_train}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class ScoreTable:
    """Per-sample teacher scores of one split, indexed by sample index (CPU tensors)."""

    energies: torch.Tensor  # float32 [N]
    labels: torch.Tensor  # int64 [N]
    predictions: torch.Tensor  # int64 [N], teacher argmax
    confidence: torch.Tensor  # float32 [N], teacher max softmax probability
    logits: torch.Tensor | None  # float32 [N, K] or None
    meta: ScoreMeta

    @property
    def n(self) -> int:
        return int(self.energies.numel())

    @property
    def fingerprint(self) -> str:
        return self.meta.fingerprint

    def covers(self, limit: int | None) -> bool:
        """Whether this table holds the first ``limit`` training samples (``None``: all of them)."""
        if self.meta.limit_train is None:
            return True
        return limit is not None and limit <= self.meta.limit_train

    def first(self, limit: int | None) -> ScoreTable:
        """The table of the first ``limit`` samples (itself when ``limit`` is None or covers it all).

        A sample's energy depends on that sample alone, so these rows are exactly what scoring
        the first ``limit`` samples gives (docs/method.md#scoring).
        """
        if limit is None or (limit >= self.n and self.meta.limit_train in (None, limit)):
            return self
        if not self.covers(limit):
            raise UsageError(
                f"the score file holds the first {self.n} training samples, not {limit}; "
                "score again with a larger --limit-train (or none)."
            )
        rows = slice(0, limit)
        return ScoreTable(
            energies=self.energies[rows],
            labels=self.labels[rows],
            predictions=self.predictions[rows],
            confidence=self.confidence[rows],
            logits=self.logits[rows] if self.logits is not None else None,
            meta=replace(self.meta, limit_train=limit),
        )


def _utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _version() -> str:
    from ekdcli import __version__

    return __version__


def _checked_labels(
    logits: torch.Tensor, labels: torch.Tensor | list[int], energy_temperature: float
) -> torch.Tensor:
    """The labels as int64 ``[N]``, after checking the logits' shape and the temperature."""
    import torch

    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] == 0:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise UsageError(
            f"teacher logits must be a non-empty [N, K] tensor, got {shape}; check the model output."
        )
    target = torch.as_tensor(labels).to(torch.int64).flatten()
    if target.numel() != logits.shape[0]:
        raise UsageError(
            f"got {logits.shape[0]} rows of logits but {target.numel()} labels; "
            "score the whole split in order."
        )
    if not (math.isfinite(energy_temperature) and energy_temperature > 0):
        raise UsageError(f"the energy temperature must be a positive number, got {energy_temperature}.")
    return target


def score_from_logits(
    logits: torch.Tensor,
    labels: torch.Tensor | list[int],
    energy_temperature: float = ENERGY_TEMPERATURE,
    *,
    teacher: str = "",
    teacher_sha256: str = "",
    dataset: str = "",
    dataset_fingerprint: str | None = None,
    extra: dict[str, Any] | None = None,
    keep_logits: bool | None = None,
    limit_train: int | None = None,
) -> ScoreTable:
    """Energies, predictions and confidences from teacher logits ``[N, K]`` (float32 math).

    ``dataset_fingerprint`` defaults to the fingerprint of ``labels`` (the same
    one :meth:`InMemoryDataset.fingerprint` gives).  ``keep_logits=None`` keeps
    the logits when ``N*K <= KEEP_LOGITS_MAX_VALUES`` (the average-prediction
    figure needs them; ImageNet's would be gigabytes).  ``limit_train`` says that the logits
    are those of the first samples of a larger split whose fingerprint is ``dataset_fingerprint``.
    """
    import torch

    from ekdcli.sdk.contracts import labels_fingerprint

    target = _checked_labels(logits, labels, energy_temperature)
    z = logits.detach().float()
    energies = energy(z, energy_temperature)
    confidence, predictions = torch.softmax(z, dim=-1).max(dim=-1)
    if keep_logits is None:
        keep_logits = z.numel() <= KEEP_LOGITS_MAX_VALUES
    fingerprint = (
        dataset_fingerprint if dataset_fingerprint is not None else labels_fingerprint(target.tolist())
    )
    meta = ScoreMeta(
        teacher=teacher,
        teacher_sha256=teacher_sha256,
        dataset=dataset,
        dataset_fingerprint=fingerprint,
        energy_temperature=float(energy_temperature),
        created=_utc_now(),
        ekd_version=_version(),
        extra=dict(extra or {}),
        limit_train=limit_train,
    )
    return ScoreTable(
        energies=energies.cpu(),
        labels=target.cpu(),
        predictions=predictions.to(torch.int64).cpu(),
        confidence=confidence.cpu(),
        logits=z.cpu() if keep_logits else None,
        meta=meta,
    )


# ------------------------------------------------------------------------- files
def _make_hint(teacher: str | None, data: str | None) -> str:
    return f"`ekd score --teacher {teacher or 'TEACHER'} --data {data or 'DATA'}`"


def save_scores(path: str | os.PathLike[str], table: ScoreTable) -> Path:
    """Write ``table`` atomically as safetensors; the logits only when the table has them."""
    from ekdcli.store.weights import save_tensors

    tensors = {key: getattr(table, key) for key in _TENSOR_KEYS}
    if table.logits is not None:
        tensors["logits"] = table.logits
    metadata: dict[str, Any] = {
        "format": SCORE_FORMAT,
        "format_version": SCORE_FORMAT_VERSION,
        "fingerprint": table.fingerprint,
        "n": table.n,
        **{k: v for k, v in asdict(table.meta).items()},
    }
    return save_tensors(path, tensors, metadata)


def load_scores(
    path: str | os.PathLike[str], teacher: str | None = None, data: str | None = None
) -> ScoreTable:
    """Read a score file; ``teacher``/``data`` only shape the error message for a missing file."""
    import torch

    from ekdcli.store.weights import load_tensors, meta_value

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no score file at {file}; create it with {_make_hint(teacher, data)}.")
    try:
        tensors, metadata = load_tensors(file)
    except UsageError as exc:
        raise UsageError(
            f"{file} is not an ekd score file (not readable as safetensors); "
            f"re-create it with {_make_hint(teacher, data)}."
        ) from exc
    missing = [k for k in _TENSOR_KEYS if k not in tensors]
    if metadata.get("format") != SCORE_FORMAT or missing:
        raise UsageError(
            f"{file} is not an ekd score file (no '{SCORE_FORMAT}' format tag or "
            f"missing {missing or 'metadata'}); "
            f"pass a file written by {_make_hint(teacher, data)}."
        )
    n = tensors["energies"].numel()
    if any(tensors[k].dim() != 1 or tensors[k].numel() != n for k in _TENSOR_KEYS):
        raise UsageError(
            f"{file} is a damaged score file (columns of different lengths); re-create it with --force."
        )
    bad = int((~torch.isfinite(tensors["energies"].float())).sum())
    if bad:
        raise UsageError(
            f"{file} holds {bad} non-finite energies (scored with a diverged teacher); re-create it from "
            f"a trained teacher with {_make_hint(teacher, data)[:-1]} --force`."
        )
    logits = tensors.get("logits")
    # save_tensors keeps strings raw and JSON-encodes everything else.
    meta = ScoreMeta(
        teacher=metadata.get("teacher", ""),
        teacher_sha256=metadata.get("teacher_sha256", ""),
        dataset=metadata.get("dataset", ""),
        dataset_fingerprint=metadata.get("dataset_fingerprint", ""),
        energy_temperature=float(meta_value(metadata, "energy_temperature", ENERGY_TEMPERATURE)),
        created=metadata.get("created", ""),
        ekd_version=metadata.get("ekd_version", ""),
        extra=dict(meta_value(metadata, "extra", {}) or {}),
        limit_train=_limit(meta_value(metadata, "limit_train")),
    )
    return ScoreTable(
        energies=tensors["energies"].float(),
        labels=tensors["labels"].to(torch.int64),
        predictions=tensors["predictions"].to(torch.int64),
        confidence=tensors["confidence"].float(),
        logits=logits.float() if logits is not None else None,
        meta=meta,
    )


def _limit(value: Any) -> int | None:
    """The stored ``limit_train`` (files written before it existed hold every sample: None)."""
    return None if value is None else int(value)


def check_compatible(
    table: ScoreTable,
    teacher_sha256: str | None = None,
    dataset_fingerprint: str | None = None,
    energy_temperature: float | None = None,
    data: str | None = None,
) -> None:
    """Refuse scores made with other teacher weights, another dataset or another T_E.

    ``data`` is the dataset as the user names it (``--data``) for the suggested command.
    """
    meta = table.meta
    checks = (
        ("teacher weights (sha256)", teacher_sha256, meta.teacher_sha256),
        ("dataset", dataset_fingerprint, meta.dataset_fingerprint),
        ("energy temperature", energy_temperature, meta.energy_temperature),
    )
    for what, expected, found in checks:
        if expected is None:
            continue
        numeric = isinstance(expected, (int, float))
        same = math.isclose(float(expected), float(found)) if numeric else expected == found
        if not same:
            teacher, dataset = meta.teacher or "TEACHER", data or meta.dataset or "DATA"
            command = f"ekd score --teacher {teacher} --data {dataset} --force"
            if numeric:
                command += f" --energy-temperature {float(expected):g}"
            raise UsageError(
                f"the score file was made for another {what}: expected {expected}, found {found}; "
                f"re-run `{command}`."
            )


# ----------------------------------------------------------------------- summary
def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks in float64, ties given the mean of the ranks they span."""
    import torch

    x = values.detach().double().flatten()
    order = torch.argsort(x, stable=True)
    ordered = x[order]
    _, counts = torch.unique_consecutive(ordered, return_counts=True)
    ends = torch.cumsum(counts, 0).double()  # 1-based rank of each tie group's last member
    group_rank = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(x)
    ranks[order] = torch.repeat_interleave(group_rank, counts)
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation (Pearson of average ranks); NaN when either side is constant."""
    ra, rb = average_ranks(a), average_ranks(b)
    da, db = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((da * da).sum()) * float((db * db).sum()))
    return float((da * db).sum()) / denom if denom > 0 else math.nan


def summarize(table: ScoreTable, rate: float = 0.2) -> dict[str, Any]:
    """Energy quantiles and how energy relates to teacher confidence and accuracy.

    ``low``/``high`` are the ``max(1, floor(N*rate))`` lowest / highest energies
    by rank (stable order), so ties do not change their size; ``thresholds``
    are the partition thresholds for the same rate.
    """
    import torch

    both_sides_rate("", "the summary rate", rate)
    e = table.energies.double()
    n = e.numel()
    correct = (table.predictions == table.labels).double()
    conf = table.confidence.double()
    probabilities = [0.05, 0.10, 0.25, 0.5, 0.75, 0.90, 0.95]
    qs = torch.quantile(e, torch.tensor(probabilities, dtype=torch.float64))
    order = torch.argsort(e, stable=True)
    k = max(1, math.floor(n * rate))

    def group(rows: torch.Tensor) -> dict[str, float | int]:
        return {
            "count": int(rows.numel()),
            "mean_confidence": float(conf[rows].mean()),
            "accuracy": float(correct[rows].mean()),
            "mean_energy": float(e[rows].mean()),
        }

    return {
        "n": n,
        "limit_train": table.meta.limit_train,
        "energy_temperature": table.meta.energy_temperature,
        "energy": {
            "min": float(e.min()),
            "q05": float(qs[0]),
            "q10": float(qs[1]),
            "q25": float(qs[2]),
            "median": float(qs[3]),
            "q75": float(qs[4]),
            "q90": float(qs[5]),
            "q95": float(qs[6]),
            "max": float(e.max()),
            "mean": float(e.mean()),
        },
        "accuracy": float(correct.mean()),
        "mean_confidence": float(conf.mean()),
        "rate": rate,
        "low": group(order[:k]),
        "high": group(order[n - k :]),
        # None rather than NaN when undefined (constant confidence): the summary must stay valid JSON.
        "spearman_energy_confidence": None if math.isnan(rho := spearman(e, conf)) else rho,
        "thresholds": compute_thresholds(table.energies, rate, rate).as_dict(),
    }


def _num(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def format_summary(summary: dict[str, Any]) -> str:
    """Readable, column-aligned text of :func:`summarize`'s result."""
    en = summary["energy"]
    pct = f"{summary['rate']:.0%}"
    subset = " (the first ones of the training set: --limit-train)" if summary.get("limit_train") else ""
    lines = [
        f"samples            {summary['n']}{subset}",
        f"energy temperature {summary['energy_temperature']:g}",
        f"teacher accuracy   {summary['accuracy']:.2%}   mean confidence {summary['mean_confidence']:.4f}",
        "",
        "energy   " + "".join(f"{k:>11}" for k in en),
        "         " + "".join(f"{en[k]:>11.4f}" for k in en),
        "",
        f"{'group':<26}{'count':>8}{'mean energy':>13}{'confidence':>12}{'accuracy':>10}",
    ]
    for name, label in (("low", f"lowest {pct} (certain)"), ("high", f"highest {pct} (uncertain)")):
        g = summary[name]
        lines.append(
            f"{label:<26}{g['count']:>8}{g['mean_energy']:>13.4f}{g['mean_confidence']:>12.4f}{g['accuracy']:>10.2%}"
        )
    th = summary["thresholds"]
    lines += [
        "",
        f"spearman(energy, confidence) {_num(summary['spearman_energy_confidence'])}",
        f"thresholds at rate {summary['rate']:g}: E_low {th['low']:.4f}  E_high {th['high']:.4f}",
    ]
    return "\n".join(lines)

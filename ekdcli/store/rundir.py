"""The run directory: what a training run writes and how every reader finds it again.

One module owns the format, so that the engine (writer), ``ekd evaluate`` and the campaign and
report tools (readers) agree on it::

    config.toml        the resolved configuration the run was started with
    environment.json   device, precision, library versions (rewritten on resume)
    metrics.jsonl      one JSON object per finished epoch
    last.safetensors   the weights after the last finished epoch
    best.safetensors   the weights of the best test top-1 so far
    checkpoint.pt      what --resume needs (written by the engine's checkpoint module)
    summary.json       written once, when the run has trained all its epochs
    run.log            what the console showed (without progress bars), kept as it is said
    curves.png         loss, train/test top-1 and learning rate per epoch (drawn by the jobs)

Every file is written atomically: a crash leaves the previous version in place.  Accuracies are
fractions in [0, 1] (``environment.json`` says ``"run_format": 2``); the readers convert the
percentages of run directories written before (format 1), so old runs compare with new ones.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.store.atomic import atomic_write_json, atomic_write_text
from ekdcli.store.weights import save_tensors
from ekdcli.util.errors import UsageError
from ekdcli.util.transcript import Transcript

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    import torch

CONFIG = "config.toml"
ENVIRONMENT = "environment.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
BEST = "best.safetensors"
LAST = "last.safetensors"
CHECKPOINT = "checkpoint.pt"
RUN_LOG = "run.log"
CURVES = "curves.png"
WHICH = ("best", "last")
# the files that make a directory a run directory (any one of them)
RUN_FILES = (CONFIG, METRICS, SUMMARY, BEST, LAST)
# 2: accuracies as fractions; 1 (no "run_format" in environment.json): accuracies in percent
RUN_FORMAT = 2
_ACCURACY_KEYS = (
    "train_top1",
    "train_top5",
    "test_top1",
    "test_top5",
    "best_top1",
    "best_top5",
    "last_top1",
    "last_top5",
)


class RunWriter:
    """Writes a run directory; a no-op without a directory or on processes other than rank 0."""

    def __init__(self, run_dir: Path | None, active: bool = True) -> None:
        self.run_dir = run_dir if active else None

    def start(self, config_text: str, environment: dict[str, Any]) -> None:
        if self.run_dir is None:
            return
        config = self.run_dir / CONFIG
        if config_text or not config.exists():
            atomic_write_text(config, config_text)
        atomic_write_json(self.run_dir / ENVIRONMENT, {**environment, "run_format": RUN_FORMAT})

    def discard_start(self) -> None:
        """Remove what :meth:`start` wrote (a run refused before its first step leaves nothing)."""
        if self.run_dir is not None:
            for name in (CONFIG, ENVIRONMENT):
                (self.run_dir / name).unlink(missing_ok=True)

    def log(self, transcript: Transcript) -> None:
        """Keep ``transcript`` in ``run.log`` from now on (after what a resumed run's log already holds)."""
        if self.run_dir is None:
            return
        path = self.run_dir / RUN_LOG
        before = path.read_text(encoding="utf-8") if path.is_file() else ""
        transcript.attach(
            lambda lines: atomic_write_text(path, before + "".join(f"{line}\n" for line in lines))
        )

    def metrics(self, history: list[dict[str, Any]]) -> None:
        if self.run_dir is not None:
            text = "".join(json.dumps(record, sort_keys=True) + "\n" for record in history)
            atomic_write_text(self.run_dir / METRICS, text)

    def weights(self, which: str, state: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
        if self.run_dir is not None:
            save_tensors(self.run_dir / f"{which}.safetensors", state, metadata)

    def summary(self, summary: dict[str, Any]) -> None:
        if self.run_dir is not None:
            atomic_write_json(self.run_dir / SUMMARY, summary)


# ------------------------------------------------------------------ reading
def is_run_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in RUN_FILES)


def is_finished(run_dir: Path) -> bool:
    return (run_dir / SUMMARY).is_file()


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's ``config.toml`` as a table ({} when the run has none)."""
    path = run_dir / CONFIG
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid TOML ({exc}); repair or remove it.") from exc


def run_format(run_dir: Path) -> int:
    """The format version of a run directory (1 when its environment.json predates versions)."""
    path = run_dir / ENVIRONMENT
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("run_format", 1)
    except (OSError, ValueError, AttributeError):
        return RUN_FORMAT  # no readable environment.json: a run of this version that has not started
    return int(recorded) if isinstance(recorded, int) else 1


def _as_fractions(record: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A record with the accuracies of a format-1 run (percent) turned into fractions."""
    if run_format(run_dir) >= 2:
        return record
    return {k: v / 100.0 if k in _ACCURACY_KEYS and _finite(v) else v for k, v in record.items()}


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch records of ``metrics.jsonl`` ([] when there are none yet)."""
    path = run_dir / METRICS
    records: list[dict[str, Any]] = []
    if not path.is_file():
        return records
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} line {number} is not JSON ({exc}); repair or remove it.") from exc
    return [_as_fractions(record, run_dir) for record in records]


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """``summary.json`` of a finished run, else None."""
    path = run_dir / SUMMARY
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not JSON ({exc}); repair or remove it.") from exc
    return _as_fractions(summary, run_dir) if isinstance(summary, dict) else None


def weights_path(run_dir: Path, which: str) -> Path:
    """``best`` or ``last`` weights of a run; a missing file says what the run has instead."""
    if which not in WHICH:
        raise UsageError(f"which weights of a run: 'best' or 'last', not {which!r}.")
    path = run_dir / f"{which}.safetensors"
    if path.is_file():
        return path
    other = WHICH[1 - WHICH.index(which)]
    if (run_dir / f"{other}.safetensors").is_file():
        raise UsageError(
            f"run {run_dir} has no {which}.safetensors (no test evaluation saved it yet); "
            f"evaluate its {other} weights with --which {other}."
        )
    raise UsageError(
        f"run {run_dir} holds no weights (no best.safetensors or last.safetensors); "
        f"it has not finished an epoch: wait for it, or continue it with --resume {run_dir}."
    )


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def history(run_dir: Path) -> dict[str, Any]:
    """Best-epoch and last-epoch test top-1 of a run, from summary.json or else metrics.jsonl."""
    records = read_metrics(run_dir)
    evaluated = [r for r in records if _finite(r.get("test_top1"))]
    out: dict[str, Any] = {
        "finished": is_finished(run_dir),
        "epochs_done": max((int(r.get("epoch", 0)) for r in records), default=0),
        "epochs_planned": None,
        "best_top1": None,
        "best_epoch": None,
        "last_top1": None,
        "last_epoch": None,
    }
    if evaluated:
        best = max(evaluated, key=lambda r: r["test_top1"])  # first of equal maxima, as the engine keeps it
        out.update(
            best_top1=float(best["test_top1"]),
            best_epoch=int(best.get("epoch", 0)) or None,
            last_top1=float(evaluated[-1]["test_top1"]),
            last_epoch=int(evaluated[-1].get("epoch", 0)) or None,
        )
    summary = read_summary(run_dir)
    if summary is not None:
        for key in ("best_top1", "best_epoch", "last_top1"):
            if _finite(summary.get(key)):
                out[key] = summary[key]
        if _finite(summary.get("epochs")):
            out["epochs_planned"] = int(summary["epochs"])
    return out

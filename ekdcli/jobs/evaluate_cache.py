"""The evaluation cache: what ``ekd evaluate``'s forward passes gave, per (weights, data, options).

Evaluating a run again costs no forward pass: the metrics of a weights file on a split are kept
as one small JSON file under ``<store>/cache/evaluations/``, named by a hash of everything they
depend on (the weights' tensors, the data's identity, the split and its limit, the precision and
device type, the energy-group options); written atomically, so an interrupted write leaves no
half file.  Each entry carries a digest of its key and numbers: a file that cannot be read, or
whose numbers were edited or damaged, is treated as missing (measured again and rewritten).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli import __version__
from ekdcli.store.atomic import atomic_write_json
from ekdcli.store.layout import Store

if TYPE_CHECKING:
    from ekdcli.engine import Runtime
    from ekdcli.sdk.contracts import Dataset

# Bump when what is stored (or how it is computed) changes: older entries are then ignored.
CACHE_FORMAT = 2  # 2: entries carry a digest of key and result


def _data_identity(dataset: Dataset, data_key: str, split: str) -> dict[str, Any]:
    """The data: its store name, its labels' fingerprint, and the file it came from (size, time)."""
    identity: dict[str, Any] = {"data": data_key, split: dataset.fingerprint(split)}
    source = dataset.info.get("source")
    if isinstance(source, str) and source:
        identity["source"] = source
        try:
            stat = os.stat(source)
            identity["source_stat"] = [stat.st_size, stat.st_mtime_ns]
        except OSError:
            pass
    return identity


def evaluation_key(
    weights: Path,
    dataset: Dataset,
    data_key: str,
    split: str,
    limit: int | None,
    runtime: Runtime,
    groups: dict[str, Any] | None,
) -> str:
    """The cache key of one evaluation: a hash of everything its numbers depend on."""
    from ekdcli.store.weights import weights_sha256

    material = {
        "format": CACHE_FORMAT,
        "ekd": __version__,
        "weights": weights_sha256(weights),
        **_data_identity(dataset, data_key, split),
        "split": split,
        "limit": limit,
        "precision": runtime.precision,
        "device": runtime.device.type,
        "groups": groups,
    }
    if groups is not None:
        material["train"] = dataset.fingerprint("train")
    text = json.dumps(material, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class EvaluationCache:
    """``get``/``put`` of measured results by key; ``enabled=False`` reads and writes nothing."""

    def __init__(self, store: Store, enabled: bool = True) -> None:
        self.store = store
        self.enabled = enabled
        self.hits = 0

    def path(self, key: str) -> Path:
        return self.store.evaluation_cache_path(key)

    def get(self, key: str) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        try:
            entry = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if (
            not isinstance(entry, dict)
            or entry.get("key") != key
            or not isinstance(entry.get("result"), dict)
            or entry.get("digest") != _digest(key, entry["result"])  # edited or damaged: measure again
        ):
            return None
        self.hits += 1
        return dict(entry["result"])

    def put(self, key: str, result: dict[str, Any]) -> None:
        if self.enabled:
            entry = {"key": key, "result": result, "digest": _digest(key, result)}
            atomic_write_json(self.path(key), entry)


def _digest(key: str, result: dict[str, Any]) -> str:
    """What ties an entry's numbers to its key (the weights' and data's fingerprints)."""
    text = json.dumps({"format": CACHE_FORMAT, "key": key, "result": result}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()

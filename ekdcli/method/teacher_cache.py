"""An exact cache of the frozen teacher's logits per (sample index, crop/flip view).

A CIFAR image with pad-4 random crop and flip has only ``9 * 9 * 2 = 162`` distinct views
(:func:`ekdcli.engine.pipeline.view_count`), so over a long run the teacher keeps recomputing
logits it has already produced.  The cache keeps them in memory-mapped files in the store:

* ``<precision>-<dtype>.logits.npy``: ``[N, V, K]`` in float16 or float32;
* ``<precision>-<dtype>.filled.npy``: ``uint8 [N, V]``, 1 where the row holds logits;
* ``<precision>-<dtype>.json``: the header (teacher weights sha256, dataset fingerprint, shapes,
  view layout), written atomically *after* the arrays: an array set without a matching header
  is rebuilt, never trusted.

Both arrays are created sparse (only pages that get written take disk space).  CIFAR-100 in
float16 is ``50000 x 162 x 100 x 2`` bytes = 1.6 GB at most (3.2 GB in float32); since each
sample's views share pages, the file reaches most of that size within a few dozen epochs.

Only clean views of in-memory datasets are cached; mixed (HE-DA) images never are.  Lookups are
vectorized: one gather of the filled flags for the batch, one teacher call on the missing rows
(plus any uncached extra rows), one scatter back.  Under DDP every rank maps the same files
(``MAP_SHARED``): ranks write identical values for a view (the same teacher on the same input),
so concurrent writes are harmless; rank 0 creates or rebuilds the files before the others open them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from ekdcli.store.atomic import atomic_write_json
from ekdcli.store.locks import FileLock, lock_for
from ekdcli.util.errors import JobError, UsageError

if TYPE_CHECKING:
    from ekdcli.engine.runtime import Runtime
    from ekdcli.sdk.contracts import InMemoryDataset

FORMAT = 1
VIEW_LAYOUT = "view = (dy * (2p + 1) + dx) * 2 + flip"
STORAGE_DTYPES = {"float16": np.float16, "float32": np.float32}
FLOAT16_MAX = float(np.finfo(np.float16).max)
_CREATE_WAIT_S = 600.0  # creating the (sparse) files takes seconds; a longer wait is a stuck process


def dataset_fingerprint(dataset: InMemoryDataset) -> str:
    """Identity of what the teacher sees for each (index, view): training images, labels,
    normalization, crop padding and flip (the score files' fingerprint covers the labels only)."""
    digest = hashlib.sha256()
    images = dataset.train_images.detach().to("cpu").contiguous()
    digest.update(f"{tuple(images.shape)}|{images.dtype}".encode())
    digest.update(images.numpy().data)
    labels = torch.as_tensor(dataset.train_labels).to("cpu", torch.int64).contiguous()
    digest.update(labels.numpy().data)
    extra = (
        tuple(map(float, dataset.mean)),
        tuple(map(float, dataset.std)),
        dataset.crop_padding,
        dataset.hflip,
    )
    digest.update(repr(extra).encode())
    return digest.hexdigest()[:32]


def storage_dtype(name: str, precision: str) -> str:
    """``auto``: float32 when the teacher runs in fp32 (the cache is then exact), else float16
    (bf16/fp16 logits are exact in float16 within its range)."""
    if name == "auto":
        return "float32" if precision == "fp32" else "float16"
    if name not in STORAGE_DTYPES:
        raise UsageError(f"teacher cache dtype must be auto, float16 or float32, not {name!r}.")
    return name


@dataclass(frozen=True)
class CacheKey:
    """What the cached logits depend on; any difference means the files are rebuilt."""

    teacher_sha256: str
    dataset_fingerprint: str
    precision: str  # the teacher's autocast precision: fp32, bf16 or fp16
    dtype: str  # storage: float16 or float32
    samples: int
    views: int
    classes: int
    padding: int

    @property
    def stem(self) -> str:
        return f"{self.precision}-{self.dtype}"

    def header(self) -> dict[str, Any]:
        return {"format": FORMAT, "view_layout": VIEW_LAYOUT, **asdict(self)}


def _mismatch(header: dict[str, Any], key: CacheKey) -> list[str]:
    expected = key.header()
    names = {"teacher_sha256": "teacher weights", "dataset_fingerprint": "dataset"}
    return [names.get(k, k) for k, v in expected.items() if header.get(k) != v]


class TeacherCache:
    """Teacher logits for clean training views, memory-mapped from ``directory``.

    Build it with :meth:`open`; call :meth:`setup` once the runtime is known, then
    :meth:`teach` per batch.  ``hits``/``misses`` count rows since the last :meth:`reset_counts`.
    """

    def __init__(self, directory: Path, key: CacheKey) -> None:
        self.directory = Path(directory)
        self.key = key
        paths = cache_files(self.directory, key)
        self.header_path, self.logits_path, self.filled_path = paths
        logits = np.load(self.logits_path, mmap_mode="r+")
        filled = np.load(self.filled_path, mmap_mode="r+")
        # Flat views: row ``index * V + view``; reshape of a contiguous memmap stays a memmap.
        self._logits = logits.reshape(key.samples * key.views, key.classes)
        self._filled = filled.reshape(key.samples * key.views)
        self.logits_dtype = torch.float32
        self.hits = 0
        self.misses = 0

    # ------------------------------------------------------------------ creation
    @classmethod
    def open(
        cls, directory: str | Path, key: CacheKey, say: Callable[[str], None] | None = None
    ) -> TeacherCache:
        """Reuse the files when their header matches ``key``, else (re)create them (rank 0 only;
        the other ranks wait, then map the same files)."""
        from ekdcli.engine import ddp

        directory = Path(directory)
        if key.dtype not in STORAGE_DTYPES:
            raise UsageError(f"teacher cache dtype must be float16 or float32, not {key.dtype!r}.")
        if ddp.rank() == 0:
            # Another process creating the same files: wait for it, then reuse them.
            lock = FileLock(lock_for(directory / key.stem), f"teacher cache {directory}", wait=_CREATE_WAIT_S)
            if say is not None:
                lock.on_wait = lambda holder: say(f"waiting for {holder}, which is creating {directory}")
            with lock:
                message = _prepare(directory, key)
            if say is not None and message:
                say(message)
        ddp.barrier()
        return cls(directory, key)

    def setup(self, runtime: Runtime) -> None:
        """Logits come back in the dtype the teacher produces under the runtime's autocast."""
        self.logits_dtype = runtime.autocast_dtype or torch.float32

    # ------------------------------------------------------------------ use
    def filled_count(self) -> int:
        return int(np.count_nonzero(self._filled))

    def clear(self) -> None:
        """Forget every entry (the files stay; benchmarks time a cold cache with it)."""
        self._filled[:] = 0

    def flush(self) -> None:
        """Write dirty pages to disk now (the OS does it anyway; the files are shared mappings)."""
        self._logits.flush()
        self._filled.flush()

    def reset_counts(self) -> None:
        self.hits = self.misses = 0

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.directory), "dtype": self.key.dtype, "precision": self.key.precision}

    def lookup(self, indices: torch.Tensor, views: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Flat cache rows of the batch (host int64) and a host boolean mask of those filled."""
        key = self.key
        index = indices.detach().to("cpu", torch.int64).numpy()
        view = views.detach().to("cpu", torch.int64).numpy()
        bad = index[(index < 0) | (index >= key.samples)]
        if bad.size:
            raise UsageError(
                f"sample index {int(bad[0])} is outside the cached training set of {key.samples}; "
                "the teacher cache was built for another dataset: run without --teacher-cache."
            )
        bad = view[(view < 0) | (view >= key.views)]
        if bad.size:
            raise UsageError(
                f"view code {int(bad[0])} is outside the cache's {key.views} views (crop padding "
                f"{key.padding}); rerun without --teacher-cache."
            )
        flat = index * key.views + view
        return flat, self._filled[flat].astype(bool)

    def teach(
        self,
        teacher: Callable[[torch.Tensor], torch.Tensor],
        images: torch.Tensor,
        indices: torch.Tensor,
        views: torch.Tensor,
        extra: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher logits of the clean ``images`` (cached) and of ``extra`` rows (never cached).

        The teacher runs once, on the cache misses followed by ``extra``; the misses are then
        written back.  Returns ``(clean_logits [B, K], extra_logits [M, K] or None)``.
        """
        rows, device = int(images.shape[0]), images.device
        flat, hit = self.lookup(indices, views)
        miss = np.flatnonzero(~hit)
        n_hit, n_miss = rows - miss.size, int(miss.size)
        self.hits += n_hit
        self.misses += n_miss
        n_extra = 0 if extra is None else int(extra.shape[0])
        computed = torch.empty(0)
        if n_miss or n_extra:
            parts = []
            if n_miss:
                parts.append(images if n_miss == rows else images[torch.from_numpy(miss).to(device)])
            if n_extra:
                parts.append(cast(torch.Tensor, extra))
            computed = teacher(parts[0] if len(parts) == 1 else torch.cat(parts))
            self.logits_dtype = computed.dtype
        if n_hit == 0 and (n_miss or n_extra):
            clean = computed[:n_miss]
        else:
            clean = torch.empty((rows, self.key.classes), dtype=self.logits_dtype, device=device)
            hit_rows = np.flatnonzero(hit)
            cached = torch.from_numpy(np.ascontiguousarray(self._logits[flat[hit_rows]]))
            clean[torch.from_numpy(hit_rows).to(device)] = cached.to(device, self.logits_dtype)
            if n_miss:
                clean[torch.from_numpy(miss).to(device)] = computed[:n_miss]
        if n_miss:
            self._write(flat[miss], computed[:n_miss])
        return clean, (computed[n_miss:] if n_extra else None)

    def _write(self, flat: np.ndarray, logits: torch.Tensor) -> None:
        if logits.shape[1] != self.key.classes:
            raise JobError(
                f"the teacher gives {logits.shape[1]} logits but the cache holds {self.key.classes} classes; "
                "check that the teacher was trained for this dataset."
            )
        values = logits.detach().float().cpu().numpy()
        if self.key.dtype == "float16" and np.abs(values).max(initial=0.0) > FLOAT16_MAX:
            raise JobError(
                f"teacher logits reach {np.abs(values).max():.3g}, beyond float16's range; use float32 "
                'cache storage (teacher_cache_dtype = "float32") or run without --teacher-cache.'
            )
        self._logits[flat] = values.astype(STORAGE_DTYPES[self.key.dtype])
        self._filled[flat] = 1  # after the logits: a reader never sees a flag before its row


def cache_files(directory: Path, key: CacheKey) -> tuple[Path, Path, Path]:
    """Header, logits and filled-flag paths of ``key``'s variant inside ``directory``."""
    stem = key.stem
    return directory / f"{stem}.json", directory / f"{stem}.logits.npy", directory / f"{stem}.filled.npy"


def _prepare(directory: Path, key: CacheKey) -> str:
    """Make sure matching files exist; return what was done, for the user."""
    header_path, logits_path, filled_path = cache_files(directory, key)
    reason = ""
    if header_path.is_file():
        try:
            header = json.loads(header_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            header = {}
        differ = _mismatch(header, key)
        if not differ and _arrays_ok(logits_path, filled_path, key):
            filled = np.load(filled_path, mmap_mode="r")
            count = int(np.count_nonzero(filled))
            return f"teacher cache {directory} reused: {count} of {filled.size} views filled"
        reason = f"made for another {', '.join(differ)}" if differ else "its arrays are missing or damaged"
    elif logits_path.exists() or filled_path.exists():
        reason = "it has no header (an interrupted creation)"
    header_path.unlink(missing_ok=True)  # first: a crash below leaves files that are never trusted
    directory.mkdir(parents=True, exist_ok=True)
    shape = (key.samples, key.views)
    np.lib.format.open_memmap(
        logits_path, mode="w+", dtype=STORAGE_DTYPES[key.dtype], shape=(*shape, key.classes)
    ).flush()
    np.lib.format.open_memmap(filled_path, mode="w+", dtype=np.uint8, shape=shape).flush()
    atomic_write_json(header_path, key.header())
    size = key.samples * key.views * key.classes * np.dtype(STORAGE_DTYPES[key.dtype]).itemsize
    what = f"rebuilt ({reason})" if reason else "created"
    return f"teacher cache {directory} {what}: up to {_size(size)} on disk as views fill"


def _size(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.2f} GiB"


def _arrays_ok(logits_path: Path, filled_path: Path, key: CacheKey) -> bool:
    try:
        logits = np.load(logits_path, mmap_mode="r")
        filled = np.load(filled_path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return (
        logits.shape == (key.samples, key.views, key.classes)
        and logits.dtype == STORAGE_DTYPES[key.dtype]
        and filled.shape == (key.samples, key.views)
        and filled.dtype == np.uint8
    )


def build_key(dataset: InMemoryDataset, teacher_sha256: str, precision: str, dtype: str = "auto") -> CacheKey:
    """The cache key of a teacher (by weights hash) on an in-memory dataset's training split."""
    from ekdcli.engine.pipeline import view_count

    return CacheKey(
        teacher_sha256=teacher_sha256,
        dataset_fingerprint=dataset_fingerprint(dataset),
        precision=precision,
        dtype=storage_dtype(dtype, precision),
        samples=int(dataset.train_images.shape[0]),
        views=view_count(int(dataset.crop_padding)),
        classes=int(dataset.num_classes),
        padding=int(dataset.crop_padding),
    )

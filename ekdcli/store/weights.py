"""Weights as safetensors with string metadata. Loading never unpickles; saving only finite values."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.store.atomic import atomic_write
from ekdcli.util.errors import JobError, UsageError

if TYPE_CHECKING:
    import torch


_SHOWN = 5  # how many non-finite tensors a message names
_RECREATE = "it is damaged or not a weights file: re-create it with 'ekd train' or 'ekd import'"


def non_finite(tensors: Any, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors holding NaN or infinity, in a (nested) mapping or list."""
    import torch

    if isinstance(tensors, torch.Tensor):
        bad = tensors.is_floating_point() or tensors.is_complex()
        return [prefix or "tensor"] if bad and not bool(torch.isfinite(tensors.detach()).all()) else []
    if isinstance(tensors, dict):
        items: Any = tensors.items()
    elif isinstance(tensors, (list, tuple)):
        items = enumerate(tensors)
    else:
        return []
    found: list[str] = []
    for key, value in items:
        found += non_finite(value, f"{prefix}.{key}" if prefix else str(key))
    return found


def require_finite(tensors: Any, what: str, remedy: str = "the previous file is kept") -> None:
    """Raise JobError naming the tensors of ``what`` that hold NaN or infinity (finite or nothing)."""
    bad = non_finite(tensors)
    if bad:
        more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        raise JobError(
            f"{what} would hold NaN or infinite values ({', '.join(bad[:_SHOWN])}{more}), so it was not "
            f"written; {remedy}."
        )


def save_tensors(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None
) -> Path:
    """Write tensors atomically; metadata values that are not strings are stored as JSON.

    Refuses (JobError) tensors holding NaN or infinity: a store never holds non-finite weights.
    """
    from safetensors.torch import save

    require_finite(tensors, str(path))

    meta = {
        k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in (metadata or {}).items()
    }
    # safetensors refuses shared or non-contiguous storage: store independent copies.
    plain = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    # Serialized here, written by ekd's atomic temp file: safetensors' own save_file writes a
    # ``.tmpXXXXXX`` of its own first, which a kill -9 would leave where no clean-up recognizes it.
    data = save(plain, metadata=meta)

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(data)

    return atomic_write(path, write)


def load_tensors(
    path: str | os.PathLike[str], device: str = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read ``(tensors, metadata)``; a missing or corrupt file is a clear error."""
    from safetensors import safe_open

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no weights file at {file}; check the path.")
    try:
        with safe_open(str(file), framework="pt", device=device) as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises several types for a bad header
        raise UsageError(f"{file} is not a readable safetensors file ({exc}); {_RECREATE}.") from exc
    return tensors, metadata


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """Only the metadata of a safetensors file (cheap: reads the header)."""
    from safetensors import safe_open

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no weights file at {file}; check the path.")
    try:
        with safe_open(str(file), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:  # safetensors raises several types for a bad header
        raise UsageError(f"{file} is not a readable safetensors file ({exc}); {_RECREATE}.") from exc


def meta_value(metadata: dict[str, str], key: str, default: Any = None) -> Any:
    """Decode a metadata value written by :func:`save_tensors` (JSON where it parses)."""
    if key not in metadata:
        return default
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError:
        return metadata[key]


def weights_sha256(weights: Any) -> str:
    """sha256 of a teacher's weights: a state dict, a module, or a ``.safetensors`` path.

    Stable across files: keys sorted, and for each tensor its name, dtype,
    shape and raw bytes are hashed, so the same weights hash the same whether
    they come from memory or from any file that stores them.
    """
    import torch

    if isinstance(weights, (str, os.PathLike)):
        weights, _ = load_tensors(weights)
    elif isinstance(weights, torch.nn.Module):
        weights = weights.state_dict()
    if not isinstance(weights, dict):
        raise UsageError(
            f"cannot hash weights of type {type(weights).__name__}; pass a state dict or a file path."
        )
    digest = hashlib.sha256()
    for key in sorted(weights):
        value = weights[key]
        if not isinstance(value, torch.Tensor):
            raise UsageError(
                f"weight {key!r} is not a tensor ({type(value).__name__}); pass a plain state dict."
            )
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}|{str(flat.dtype).removeprefix('torch.')}|{list(value.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()

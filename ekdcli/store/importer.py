"""Read checkpoints from mdistiller / RepDistiller / torchvision and check them against a model.

Loading never runs arbitrary code: ``.pth`` files go through
``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers; a file that needs more (a pickled custom class) is refused.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ekdcli.util.errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

# Keys under which training scripts nest the weights (mdistiller/RepDistiller: "model").
WRAPPER_KEYS = ("model", "state_dict", "net", "model_state_dict", "student")
# BatchNorm counters that checkpoints older than PyTorch 0.4.1 lack; torch itself tolerates that.
OPTIONAL_SUFFIXES = ("num_batches_tracked",)
_SHOWN = 10  # how many offending keys an error lists per kind


def read_state_dict(path: str | os.PathLike[str], prefix: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, unwrapped and with DataParallel ``module.`` prefixes removed.

    Accepts ``.safetensors`` files and ``.pth``/``.pt`` files holding a bare state
    dict or one nested under ``model`` / ``state_dict`` / ``net`` (also several levels
    deep).  ``prefix`` keeps only the keys under it (e.g. ``"student."`` for a
    whole-distiller checkpoint) and strips it.
    """
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no checkpoint file at {file}; check the path.")
    if file.suffix == ".safetensors":
        from ekdcli.store.weights import load_tensors

        tensors, _ = load_tensors(file)
    else:
        tensors = _unwrap(_torch_load(file), file)
    tensors = {_strip_module(k): v for k, v in tensors.items()}
    if prefix:
        tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not tensors:
            raise UsageError(f"{file} has no keys starting with {prefix!r}; check the prefix.")
    return tensors


_READABLE = "give a file written by torch.save (.pth, .pt) or a .safetensors file"
_RESAVE = (
    "in an environment you trust, re-save only the weights with torch.save(model.state_dict(), path) or "
    "as .safetensors, then import that file"
)


def _torch_load(file: Path) -> Any:
    return load_weights_only(file, unreadable=_READABLE, pickled=_RESAVE)


def load_weights_only(file: Path, *, unreadable: str, pickled: str) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary code.

    A refused or unreadable file is a one-sentence UsageError naming the file and ending with
    ``pickled`` (an object ekd will not unpickle) or ``unreadable`` (a damaged or foreign file).
    """
    import torch

    # torch < 2.5 has no safe_globals: numpy scalars are then refused like any other object.
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    allowed = safe_globals(_numpy_scalar_globals()) if safe_globals else contextlib.nullcontext()
    try:
        # torch warns about the pickle protocol of raw pickles before refusing them: ekd says why itself
        with allowed, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # The weights-only unpickler names what it refused; anything else is a damaged or foreign file.
        found = re.search(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>", str(exc))
        if found is None:
            raise UsageError(
                f"{file} is not a readable PyTorch checkpoint ({_last_line(exc)}); {unreadable}."
            ) from exc
        raise UsageError(
            f"{file} contains a pickled Python object ({found.group(1) or found.group(2)}) besides tensors, "
            f"which ekd refuses to unpickle because that could run arbitrary code; {pickled}."
        ) from exc
    except Exception as exc:  # zip/pickle format errors surface as several exception types
        detail = (
            "the file is empty" if file.stat().st_size == 0 else f"{type(exc).__name__}: {_last_line(exc)}"
        )
        raise UsageError(f"{file} is not a readable PyTorch checkpoint ({detail}); {unreadable}.") from exc


def _last_line(exc: Exception) -> str:
    """The informative part of torch's long errors: the 'WeightsUnpickler error' line, else the
    first sentence of the first line (torch adds paragraphs of advice that do not apply here)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next(
        (after for before, after in zip(lines, lines[1:], strict=False) if before.endswith("error:")), None
    )
    return (detail or (lines[0] if lines else type(exc).__name__)).split(". ")[0].rstrip(".")


def _numpy_scalar_globals() -> list[Any]:
    """Plain numpy scalars and dtypes (e.g. a ``best_acc`` beside the weights): data only, safe to rebuild."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return []
    core = getattr(np, "_core", None) or np.core  # numpy 2 moved numpy.core to numpy._core
    scalar = core.multiarray.scalar
    # Files written under numpy 1.x name the function numpy.core.multiarray.scalar.
    dtype_classes = {type(np.dtype(code)) for code in "?bBhHiIlLqQefdFD"}  # numpy >= 1.25: one class each
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtype_classes]


def _is_tensor_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap(obj: Any, file: Path) -> dict[str, torch.Tensor]:
    """Descend through wrapper keys until a mapping of name -> tensor."""
    for _ in range(4):  # e.g. {"model": {"state_dict": sd}}; deeper nesting is not a checkpoint we know
        if _is_tensor_dict(obj):
            return {str(k): v for k, v in obj.items()}
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    found = (
        f"top-level keys {sorted(map(str, obj))[:_SHOWN]}" if isinstance(obj, Mapping) else type(obj).__name__
    )
    raise UsageError(
        f"{file} holds no state dict (found {found}); expected a mapping of parameter names to tensors, "
        f"bare or under one of {list(WRAPPER_KEYS)}."
    )


def _strip_module(key: str) -> str:
    """DataParallel / DDP wrap names as ``module.<name>`` (possibly more than once)."""
    while key.startswith("module."):
        key = key[len("module.") :]
    return key


def _optional(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in OPTIONAL_SUFFIXES


def _listing(what: str, items: list[str]) -> str:
    more = f", ... ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
    return f"{len(items)} {what}: {', '.join(items[:_SHOWN])}{more}"


def check_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], name: str | None = None
) -> None:
    """Raise UsageError listing missing, unexpected and mis-shaped keys; return silently on a match.

    Missing ``num_batches_tracked`` counters are tolerated (old checkpoints lack them).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not _optional(k)]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [
        f"{k} (checkpoint {list(state_dict[k].shape)} vs model {list(v.shape)})"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    # integer values where the model learns real numbers: not trained weights (rounded, or another thing)
    mistyped = [
        f"{k} ({str(state_dict[k].dtype).removeprefix('torch.')})"
        for k, v in expected.items()
        if k in state_dict and v.is_floating_point() and not state_dict[k].is_floating_point()
    ]
    if not (missing or unexpected or misshaped or mistyped):
        return
    problems = [
        _listing(what, items)
        for what, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("mis-shaped keys", misshaped),
            ("integer-typed weights", mistyped),
        )
        if items
    ]
    arch = name or type(model).__name__
    raise UsageError(
        f"the checkpoint does not fit {arch}: {'; '.join(problems)}. Check the architecture name and the "
        f"number of classes (for a checkpoint of a whole distiller, pick the student's keys with "
        f"'ekd import --prefix student.')."
    )


def convert(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], name: str | None = None
) -> dict[str, torch.Tensor]:
    """The model's full state dict (parameters and buffers) filled from ``state_dict``.

    Checks first (see :func:`check_state_dict`); floating tensors take the model's
    dtype, the result is on the CPU, contiguous and independent of the inputs.
    Missing ``num_batches_tracked`` counters keep the model's value.
    """
    check_state_dict(model, state_dict, name)
    out: dict[str, torch.Tensor] = {}
    for key, reference in model.state_dict().items():
        source = state_dict.get(key, reference)
        dtype = reference.dtype if reference.is_floating_point() else source.dtype
        out[key] = source.detach().to(device="cpu", dtype=dtype).contiguous().clone()
    return out

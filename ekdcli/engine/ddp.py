"""Multi-process data parallel: process-group set-up, collectives that are no-ops in one process.

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; :func:`init_from_env`
reads them.  Tests (torch.multiprocessing) call :func:`init` with an explicit ``file://`` method.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ekdcli.util.errors import EkdError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


def _dist():  # noqa: ANN202 - torch.distributed module, imported lazily
    import torch.distributed as dist

    return dist


def is_dist() -> bool:
    """True inside an initialized process group of more than one process."""
    dist = _dist()
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return _dist().get_rank() if is_dist() else 0


def world_size() -> int:
    return _dist().get_world_size() if is_dist() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", rank()))


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))


def is_main() -> bool:
    """Rank 0 (or a single process): the one that prints and writes files."""
    return rank() == 0


def default_backend() -> str:
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"


def init(rank: int, world_size: int, init_method: str, backend: str | None = None) -> None:
    """Join a process group explicitly (e.g. ``init_method="file:///tmp/x"`` from a test)."""
    import torch

    backend = backend or default_backend()
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    _dist().init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)


def init_from_env(backend: str | None = None) -> bool:
    """Join the group torchrun describes in the environment; False when run as one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or _dist().is_initialized():
        return is_dist()
    import torch

    backend = backend or default_backend()
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    _dist().init_process_group(backend, init_method="env://")
    return True


def cleanup() -> None:
    """Leave the process group; a barrier first, so no rank tears gloo down while another still talks."""
    if _dist().is_available() and _dist().is_initialized():
        try:
            _dist().barrier()
        finally:
            _dist().destroy_process_group()


def barrier() -> None:
    if is_dist():
        _dist().barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks in place (and return it); identity in one process."""
    if is_dist():
        _dist().all_reduce(tensor, op=_dist().ReduceOp.SUM)
    return tensor


def average_gradients(parameters: list[torch.Tensor]) -> None:
    """Average the gradients of tensors DDP does not manage (an objective's own) over ranks."""
    if not is_dist():
        return
    world = world_size()
    for parameter in parameters:
        if parameter.grad is not None:
            _dist().all_reduce(parameter.grad, op=_dist().ReduceOp.SUM)
            parameter.grad.div_(world)


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    if is_dist():
        _dist().all_reduce(tensor, op=_dist().ReduceOp.MAX)
    return tensor


def all_gather_cat(tensor: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
    """Concatenate each rank's tensor along dim 0 in rank order.

    Ranks may hold different row counts (``sizes``, known to every rank): each is padded to the
    largest for the collective, and the padding is dropped.
    """
    if not is_dist():
        return tensor
    import torch

    world = world_size()
    sizes = sizes if sizes is not None else [tensor.shape[0]] * world
    longest = max(sizes)
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(world)]
    _dist().all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


def all_gather_tensors(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's tensor (same shape on all ranks), e.g. per-rank RNG states for a checkpoint."""
    if not is_dist():
        return [tensor]
    import torch

    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    _dist().all_gather(parts, tensor.contiguous())
    return parts


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    if is_dist():
        _dist().broadcast(tensor, src=src)
    return tensor


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around ``model`` (parameters broadcast from rank 0); identity alone."""
    if not is_dist():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else 0] if device.type == "cuda" else None
    with warnings.catch_warnings():  # torch 2.14 renames the option; the behaviour we want is the same
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
        return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=True)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP and torch.compile wrappers (its state_dict has clean names)."""
    inner: Any = model
    while True:
        if hasattr(inner, "_orig_mod"):
            inner = inner._orig_mod
        elif type(inner).__name__ == "DistributedDataParallel":
            inner = inner.module
        else:
            return cast("torch.nn.Module", inner)


def from_rank0(compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0, its result (or its EkdError) on every rank; a plain call alone.

    For choices that must agree across ranks but could differ if each rank made them, e.g. a
    timestamped run-directory name.  The process group must already be joined (build the job's
    Runtime first).
    """
    if not is_dist():
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RuntimeError("from_rank0 needs the process group: create the Runtime first.")
        return compute()
    import torch.distributed as dist

    box: list[Any] = [None]
    if rank() == 0:
        try:
            box[0] = ("ok", compute())
        except EkdError as exc:
            box[0] = ("error", exc)
    dist.broadcast_object_list(box, src=0)
    kind, payload = box[0]
    if kind == "error":
        raise payload
    return payload

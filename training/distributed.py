"""torchrun helpers: process-group set-up, rank queries and differentiable gathers.

Scripts call :func:`init_distributed` once; without ``torchrun`` (no ``WORLD_SIZE`` in the
environment) everything degrades to a single process and the helpers become no-ops.
The backend is NCCL when every rank has a CUDA device and gloo otherwise (CPU runs).
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def init_distributed(device: str = "auto") -> torch.device:
    """Join the torchrun process group if launched by torchrun; return this rank's device.

    ``device`` is ``auto`` (CUDA if available, else CPU), ``cpu`` or ``cuda``. Asking for
    CUDA on a machine without one falls back to CPU with a warning rather than failing.
    """
    want_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if device == "cuda" and not torch.cuda.is_available():
        print("warning: --device cuda asked for but no CUDA device is available; using the CPU")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    # under torchrun (RANK and WORLD_SIZE set) join the group, even a one-process one
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not is_distributed():
        backend = "nccl" if want_cuda else "gloo"
        if want_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
        if dist.get_rank() == 0:
            print(f"process group: {backend}, {dist.get_world_size()} process(es)")
    if want_cuda:
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def cleanup(barrier: bool = True) -> None:
    """Leave the process group (if any); ``barrier`` waits for the other ranks first."""
    if is_distributed():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0; gradients flow back to each rank.

    Every rank must hold the same number of rows (DistributedSampler guarantees it). Uses the
    functional collectives (``all_gather_single_autograd``: the gradient of the gathered rows is
    reduce-scattered, summed, back to their rank); ``torch.distributed.nn.functional.all_gather``
    is deprecated and refused under ``torch.compile``.
    """
    if not is_distributed():
        return x
    from torch.distributed import _functional_collectives as fc

    gather = getattr(fc, "all_gather_single_autograd", None) or fc.all_gather_tensor_autograd
    return gather(x.contiguous(), 0, dist.group.WORLD)


def reduction_device() -> torch.device:
    """Where collectives must run: this rank's CUDA device under NCCL, else the CPU."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensors: list[torch.Tensor]) -> None:
    """Sum tensors over ranks in place (metric counts), wherever they live.

    NCCL reduces CUDA tensors only: CPU tensors are copied to this rank's device, reduced
    there and copied back, so the same call works under gloo (CPU) and NCCL (GPU).
    """
    if not is_distributed():
        return
    device = reduction_device()
    for t in tensors:
        buf = t if t.device == device else t.to(device)
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        if buf is not t:
            t.copy_(buf)


def broadcast_object(obj):
    """Rank 0's Python object on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]

"""torch.distributed helpers: the only module that knows about ranks (besides where it must).

Launch with torchrun (`torchrun --nproc_per_node=N train_nerf.py ...`), which sets RANK,
WORLD_SIZE and LOCAL_RANK. Without those variables everything here degrades to a single process:
rank 0 of 1, collectives are no-ops. Backend: NCCL for CUDA devices, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun set up (idempotent); a lone process gets rank 0 of 1."""
    if dist.is_available() and dist.is_initialized():
        return info()
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistInfo()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return info()


def info() -> DistInfo:
    """Rank, world size and local rank of this process."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def device_for_rank(name: str, local_rank: int) -> str:
    """`cuda` becomes `cuda:<local_rank>` so each process on a node drives its own GPU."""
    return f"cuda:{local_rank}" if name in ("cuda", "auto") and torch.cuda.is_available() else name


def barrier() -> None:
    if info().enabled:
        dist.barrier()


def all_reduce_max_(tensor: torch.Tensor) -> torch.Tensor:
    """In-place element-wise maximum over ranks."""
    if info().enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """In-place copy of rank `src`'s tensor to every rank."""
    if info().enabled:
        dist.broadcast(tensor, src)
    return tensor


def shard(n_items: int, rank: int | None = None, world_size: int | None = None) -> list[int]:
    """Indices of `n_items` this rank handles: rank, rank + W, rank + 2W, ..."""
    d = info()
    rank = d.rank if rank is None else rank
    world_size = d.world_size if world_size is None else world_size
    return list(range(rank, n_items, world_size))


def gather_to_main(obj):
    """Every rank's `obj` as a list on rank 0 (in rank order); None on the other ranks."""
    d = info()
    if not d.enabled:
        return [obj]
    out = [None] * d.world_size if d.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

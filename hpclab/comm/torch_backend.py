"""algorithm="torch": the same collectives delegated to torch.distributed (gloo, NCCL).

The reference the course's algorithms are tested and benchmarked against. Waits still
honour `timeout` and fail with the same CommError/CommTimeout as the others.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from hpclab.comm.p2p import Comm

_OPS = {"sum": dist.ReduceOp.SUM, "avg": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}


def all_reduce(comm: Comm, x: torch.Tensor, op: str) -> None:
    _wait(comm, dist.all_reduce(x, op=_OPS[op], group=comm.group, async_op=True), "all_reduce")


def reduce(comm: Comm, x: torch.Tensor, op: str, root: int) -> None:
    _wait(comm, dist.reduce(x, group_dst=root, op=_OPS[op], group=comm.group, async_op=True),
          "reduce")


def broadcast(comm: Comm, x: torch.Tensor, root: int) -> None:
    _wait(comm, dist.broadcast(x, group_src=root, group=comm.group, async_op=True), "broadcast")


def all_gather(comm: Comm, x: torch.Tensor) -> None:
    """Chunk r of rank r's x (p equal chunks) → every rank."""
    mine = x[comm.rank * x.numel() // comm.world_size:][:x.numel() // comm.world_size].clone()
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    _wait(comm, gather(x, mine, group=comm.group, async_op=True), "all_gather")


def reduce_scatter(comm: Comm, x: torch.Tensor, op: str) -> None:
    """Chunk r of x on rank r ← reduction of everyone's chunk r (p equal chunks)."""
    m = x.numel() // comm.world_size
    out = torch.empty_like(x[:m])
    scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
    _wait(comm, scatter(out, x, op=_OPS[op], group=comm.group, async_op=True),
          "reduce_scatter")
    x[comm.rank * m:(comm.rank + 1) * m].copy_(out)


def _wait(comm: Comm, work, what: str) -> None:
    comm.wait(comm.wrap(work, what))   # peer -1 in errors: torch does not say whom it waited for

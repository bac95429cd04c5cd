"""Naive collectives: one root talks to everybody, one message at a time.

All-reduce = gather to rank 0 + broadcast from rank 0.

Phase 1, gather-and-reduce (p−1 steps). Rank 0 receives the whole vector of rank 1, adds
it, then rank 2's, ... Rank 0's single link carries all p−1 vectors.

Phase 2, broadcast (p−1 steps). Rank 0 sends the result to rank 1, then rank 2, ...

    T_naive = 2(p−1)·(α + n·β) + (p−1)·n·γ

grows linearly with p: the root is the bottleneck. The same two phases give the naive
reduce (phase 1, to any root), broadcast (phase 2, from any root), all-gather (gather the
p chunks, broadcast the whole) and reduce-scatter (reduce the whole, send each rank its
chunk).
"""

from __future__ import annotations

import torch

from hpclab.comm.p2p import Comm, split


def all_reduce(comm: Comm, x: torch.Tensor, op: str) -> None:
    reduce(comm, x, op, root=0)
    broadcast(comm, x, root=0, first_step=comm.world_size - 1)


def reduce(comm: Comm, x: torch.Tensor, op: str, root: int) -> None:
    """Afterwards x on `root` holds the reduction over all ranks (others: unchanged)."""
    others = _others(comm, root)
    if comm.rank == root:
        for step, src in enumerate(others):
            comm.recv_reduce(x, src, op, step=step, phase="gather")   # x ← x ⊕ x_src
    else:
        comm.send(x, root, step=others.index(comm.rank), phase="gather")


def broadcast(comm: Comm, x: torch.Tensor, root: int, first_step: int = 0) -> None:
    others = _others(comm, root)
    if comm.rank == root:
        for step, dst in enumerate(others, start=first_step):
            comm.send(x, dst, step=step, phase="broadcast")
    else:
        comm.recv(x, root, step=first_step + others.index(comm.rank), phase="broadcast")


def all_gather(comm: Comm, x: torch.Tensor) -> None:
    """Chunk r of rank r's x → chunk r of every rank's x."""
    chunks, others = split(x, comm.world_size), _others(comm, 0)
    if comm.rank == 0:
        for step, src in enumerate(others):
            comm.recv(chunks[src], src, step=step, phase="gather")
    else:
        comm.send(chunks[comm.rank], 0, step=others.index(comm.rank), phase="gather",
                  chunk=comm.rank)
    broadcast(comm, x, root=0, first_step=comm.world_size - 1)


def reduce_scatter(comm: Comm, x: torch.Tensor, op: str) -> None:
    """Afterwards chunk r of x on rank r holds the reduction of everyone's chunk r."""
    reduce(comm, x, op, root=0)
    chunks, others = split(x, comm.world_size), _others(comm, 0)
    if comm.rank == 0:
        for step, dst in enumerate(others, start=len(others)):
            comm.send(chunks[dst], dst, step=step, phase="scatter", chunk=dst)
    else:
        comm.recv(chunks[comm.rank], 0, step=len(others) + others.index(comm.rank),
                  phase="scatter")


def _others(comm: Comm, root: int) -> list[int]:
    """Every rank but the root, in the order the root serves them: root+1, root+2, ..."""
    return [(root + k) % comm.world_size for k in range(1, comm.world_size)]

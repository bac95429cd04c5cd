"""Ring all-reduce = reduce-scatter + all-gather around a ring of p ranks.

The flat vector x (n elements) is cut into p chunks x[0..p−1]. Rank r only ever sends to
its right neighbour r+1 and receives from its left neighbour r−1 (all indices mod p).

Phase 1, reduce-scatter (steps s = 0 … p−2). Rank r sends chunk (r−s−1) and receives
chunk (r−s−2), adding the incoming copy into its own. What it receives at step s is what
it sends at step s+1, so each chunk collects one more rank's contribution per step; after
p−1 steps rank r holds chunk r summed over all p ranks (exactly what the reduce-scatter
collective leaves on rank r).

Phase 2, all-gather (steps s = 0 … p−2). Rank r sends chunk (r−s), its finished chunk
first, and receives chunk (r−s−1), overwriting its own copy.

Every step moves n/p elements per rank, so

    T_ring = 2(p−1)·α + 2(p−1)/p·n·β + (p−1)/p·n·γ

and the bandwidth term tends to 2nβ: the ring's time barely grows with p.
ring_pipelined.py is the same ring with chunks cut into segments that are passed on as
soon as they are added.
"""

from __future__ import annotations

import torch

from hpclab.comm.p2p import Comm, split


def all_reduce(comm: Comm, x: torch.Tensor, op: str) -> None:
    reduce_scatter(comm, x, op)
    all_gather(comm, x, first_step=comm.world_size - 1)


def reduce_scatter(comm: Comm, x: torch.Tensor, op: str) -> None:
    """Afterwards chunk r of x on rank r holds the reduction of everyone's chunk r."""
    p, r = comm.world_size, comm.rank
    right, left = (r + 1) % p, (r - 1) % p
    chunks = split(x, p)
    for s in range(p - 1):
        send, recv = (r - s - 1) % p, (r - s - 2) % p
        comm.exchange_reduce(chunks[send], right, chunks[recv], left, op, step=s,
                             phase="reduce-scatter", chunk=send)


def all_gather(comm: Comm, x: torch.Tensor, first_step: int = 0) -> None:
    """Afterwards every rank holds chunk r of rank r's x, for every r (in place).
    (Steps are numbered from `first_step`, so a trace of the all-reduce counts on.)"""
    p, r = comm.world_size, comm.rank
    right, left = (r + 1) % p, (r - 1) % p
    chunks = split(x, p)
    for s in range(p - 1):
        send, recv = (r - s) % p, (r - s - 1) % p
        comm.exchange(chunks[send], right, chunks[recv], left, step=first_step + s,
                      phase="all-gather", chunk=send)

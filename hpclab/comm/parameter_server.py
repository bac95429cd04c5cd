"""Parameter server, sharded: every rank is the server of 1/p of the vector.

As in Li et al.'s parameter server (OSDI 2014) and BytePS, the keys (here: chunk c of the
flat vector) are spread over the servers, so no single server's link carries everything.
Rank c is the server of chunk c and also a worker.

Phase 1, push (reduce-scatter). Every worker sends chunk c to server c; server c adds the
p−1 copies it receives into its own.

Phase 2, pull (all-gather). Every server sends its summed chunk to every worker.

In one step k = 1..p−1 rank r sends to r+k and receives from r−k, so with one message at a
time per rank this costs what the ring costs,

    T_ps = 2(p−1)·α + 2(p−1)/p·n·β + (p−1)/p·n·γ,

but here all p−1 messages of a phase are posted at once: each server is sent to by p−1
workers together (incast), which a real network handles worse than the ring's neighbours.
A single central server (no sharding) is the naive algorithm.
"""

from __future__ import annotations

import torch

from hpclab.comm.p2p import Comm, split


def all_reduce(comm: Comm, x: torch.Tensor, op: str) -> None:
    reduce_scatter(comm, x, op)   # push
    all_gather(comm, x, first_step=comm.world_size - 1)     # pull


def reduce_scatter(comm: Comm, x: torch.Tensor, op: str) -> None:
    """Push: afterwards chunk r of x on rank r holds the reduction of everyone's chunk r."""
    p, r = comm.world_size, comm.rank
    chunks = split(x, p)
    sends = [comm.isend(chunks[(r + k) % p], (r + k) % p, step=k - 1, phase="push",
                        chunk=(r + k) % p) for k in range(1, p)]
    for k in range(1, p):   # the server adds the workers' copies in as they arrive
        comm.recv_reduce(chunks[r], (r - k) % p, op, step=k - 1, phase="push")
    comm.wait(*sends)


def all_gather(comm: Comm, x: torch.Tensor, first_step: int = 0) -> None:
    """Pull: afterwards every rank holds chunk c from server c, for every c."""
    p, r = comm.world_size, comm.rank
    chunks = split(x, p)
    recvs = [comm.irecv(chunks[(r - k) % p], (r - k) % p, step=first_step + k - 1,
                        phase="pull") for k in range(1, p)]
    sends = [comm.isend(chunks[r], (r + k) % p, step=first_step + k - 1, phase="pull", chunk=r)
             for k in range(1, p)]
    comm.wait(*recvs, *sends)

"""Ring all-reduce = reduce-scatter + all-gather around a ring of p ranks.

The flat vector x (n elements) is cut into p chunks x[0..p−1]. Rank r only ever sends to
its right neighbour r+1 and receives from its left neighbour r−1 (mod p).

Phase 1, reduce-scatter (p−1 steps). At step s rank r sends chunk (r−s−1) mod p and
receives chunk (r−s−2) mod p, adding the incoming copy to its own. What it receives at
step s is what it sends at step s+1, so each chunk collects one more rank's contribution
per step; after p−1 steps rank r holds chunk r summed over all p ranks.

Phase 2, all-gather (p−1 steps). At step s rank r sends chunk (r−s) mod p (its finished
chunk first) and receives chunk (r−s−1) mod p, overwriting its own copy.

Every step moves n/p elements per rank, so

    T_ring = 2(p−1)·α + 2(p−1)/p·n·β + (p−1)/p·n·γ

and the bandwidth term tends to 2nβ: the ring's time barely grows with p.

Segmented and pipelined: a chunk travels as segments of at most `segment_bytes`, so a
rank adds segment k while segment k+1 is still on the wire, and passes segment k on to
its right neighbour as soon as it is added instead of waiting for the whole chunk.
"""

from __future__ import annotations

import torch

from hpclab.comm.ops import combine_
from hpclab.comm.p2p import Comm, Inbox, segments, split

# 2 MiB: large enough that the per-segment cost (α plus Python's bookkeeping, ~0.1-0.2 ms
# on a busy 2-core machine) is small next to the segment's nβ, small enough that adding one
# segment overlaps the transfer of the next (1 MiB and 4 MiB measured slower at 16-64 MiB).
SEGMENT_BYTES = 2 << 20


def all_reduce(comm: Comm, x: torch.Tensor, op: str, segment_bytes: int = SEGMENT_BYTES):
    reduce_scatter(comm, x, op, segment_bytes)
    all_gather(comm, x, segment_bytes, first_step=comm.world_size - 1)


def reduce_scatter(comm: Comm, x: torch.Tensor, op: str,
                   segment_bytes: int = SEGMENT_BYTES) -> None:
    """Afterwards chunk r of x on rank r holds the reduction of everyone's chunk r."""
    p, r = comm.world_size, comm.rank
    if p == 1:
        return
    right, left = (r + 1) % p, (r - 1) % p
    chunks = split(x, p)
    # What arrives from the left, in order: the segments of chunk (r−s−2) mod p at step s.
    # Receives are posted first, so the left neighbour's data has somewhere to land.
    arriving = [(step, c, k, seg)
                for step, c in [(s, (r - s - 2) % p) for s in range(p - 1)]
                for k, seg in enumerate(segments(chunks[c], segment_bytes))]
    with Inbox(comm, left, [seg.numel() for *_, seg in arriving], x,
               steps=[step for step, *_ in arriving], phase="reduce-scatter") as inbox:
        first = (r - 1) % p
        sends = [comm.isend(seg, right, step=0, phase="reduce-scatter", chunk=first,
                            segment=k)
                 for k, seg in enumerate(segments(chunks[first], segment_bytes))]
        for step, c, k, mine in arriving:
            combine_(mine, inbox.next(), op)
            if step < p - 2:   # pipelining: pass the added segment on at once
                sends.append(comm.isend(mine, right, step=step + 1, phase="reduce-scatter",
                                        chunk=c, segment=k))
    comm.wait(*sends)


def all_gather(comm: Comm, x: torch.Tensor, segment_bytes: int = SEGMENT_BYTES,
               first_step: int = 0) -> None:
    """Afterwards every rank holds chunk r of rank r's x, for every r (in place).
    (Steps are numbered from `first_step`, so a trace of the all-reduce counts on.)"""
    p, r = comm.world_size, comm.rank
    if p == 1:
        return
    right, left = (r + 1) % p, (r - 1) % p
    chunks = split(x, p)
    # What arrives from the left: chunk (r−s−1) mod p at step s, each straight into its
    # place, so every receive can be posted up front.
    arriving = [(step, c, k, seg)
                for step, c in [(s, (r - s - 1) % p) for s in range(p - 1)]
                for k, seg in enumerate(segments(chunks[c], segment_bytes))]
    recvs = [comm.irecv(seg, left, step=first_step + step, phase="all-gather")
             for step, _, _, seg in arriving]
    sends = [comm.isend(seg, right, step=first_step, phase="all-gather", chunk=r, segment=k)
             for k, seg in enumerate(segments(chunks[r], segment_bytes))]
    for recv, (step, c, k, seg) in zip(recvs, arriving):
        comm.wait(recv)
        if step < p - 2:   # pipelining: pass the segment on as soon as it is here
            sends.append(comm.isend(seg, right, step=first_step + step + 1,
                                    phase="all-gather", chunk=c, segment=k))
    comm.wait(*sends)

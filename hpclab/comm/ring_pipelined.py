"""The pipelined ring (algorithm="ring_pipelined"): ring.py's two phases, chunks in segments.

Same ring, same chunk numbering as ring.py (reduce-scatter step s: rank r sends chunk
r−s−1 and adds chunk r−s−2; all-gather step s: sends chunk r−s, receives chunk r−s−1),
but each chunk travels as k segments of at most `segment_bytes`. A rank adds segment j
while segment j+1 is still on the wire, and passes segment j on to its right neighbour as
soon as it is added, instead of waiting for the whole chunk: the steps of a phase overlap
like the stages of a pipeline (NCCL and gloo pipeline their rings this way). With k
segments per chunk,

    T_pipelined = 2(p−1)·k·α + 2(p−1)/p·n·β + (p−1)/p·n·γ

the ring's bandwidth and reduction terms with k times the messages. What it saves is
waiting, which the α–β–γ model does not contain: in the plain ring a rank starts step s+1
only when its whole chunk of step s has arrived, so one slow transfer delays every rank
behind it by a whole step.
"""

from __future__ import annotations

import torch

from hpclab.comm.ops import combine_
from hpclab.comm.p2p import Comm, split

# 2 MiB: large enough that the per-segment cost (α plus Python's bookkeeping, ~0.1-0.2 ms
# on the 2-core course VM) is small next to the segment's nβ, small enough that adding one
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
    chunks = split(x, p)
    arriving = _arriving(comm, chunks, 2, segment_bytes)    # chunk r−s−2 at step s
    with comm.inbox((r - 1) % p, [seg.numel() for *_, seg in arriving], x,
                    steps=[s for s, *_ in arriving], phase="reduce-scatter") as inbox:
        sends = _send(comm, chunks[(r - 1) % p], (r - 1) % p, 0, "reduce-scatter",
                      segment_bytes)
        for s, c, j, mine in arriving:
            combine_(mine, inbox.next(), op)
            if s < p - 2:   # pipelining: pass the added segment on at once
                sends += _send(comm, mine, c, s + 1, "reduce-scatter", segment_bytes, j)
    comm.wait(*sends)


def all_gather(comm: Comm, x: torch.Tensor, segment_bytes: int = SEGMENT_BYTES,
               first_step: int = 0) -> None:
    """Afterwards every rank holds chunk r of rank r's x, for every r (in place)."""
    p, r = comm.world_size, comm.rank
    if p == 1:
        return
    chunks = split(x, p)
    # chunk r−s−1 at step s, each segment straight into its place: all posted up front
    arriving = _arriving(comm, chunks, 1, segment_bytes)
    recvs = [comm.irecv(seg, (r - 1) % p, step=first_step + s, phase="all-gather")
             for s, *_, seg in arriving]
    sends = _send(comm, chunks[r], r, first_step, "all-gather", segment_bytes)
    for recv, (s, c, j, seg) in zip(recvs, arriving):
        comm.wait(recv)
        if s < p - 2:   # pipelining: pass the segment on as soon as it is here
            sends += _send(comm, seg, c, first_step + s + 1, "all-gather", segment_bytes, j)
    comm.wait(*sends)


def _arriving(comm: Comm, chunks: list[torch.Tensor], lag: int, segment_bytes: int):
    """(step s, chunk c, segment j, its view) of everything that arrives from the left
    in a phase, in order: the segments of chunk c = r−s−lag at each step s."""
    p, r = comm.world_size, comm.rank
    return [(s, (r - s - lag) % p, j, seg) for s in range(p - 1)
            for j, seg in enumerate(segments(chunks[(r - s - lag) % p], segment_bytes))]


def _send(comm: Comm, piece: torch.Tensor, chunk: int, step: int, phase: str,
          segment_bytes: int, segment: int | None = None) -> list:
    """Post `piece` to the right neighbour: one segment (numbered `segment`), or a whole
    chunk cut into segments 0, 1, ..."""
    cut = [piece] if segment is not None else segments(piece, segment_bytes)
    first = segment or 0
    return [comm.isend(seg, (comm.rank + 1) % comm.world_size, step=step, phase=phase,
                       chunk=chunk, segment=first + j) for j, seg in enumerate(cut)]


def segments(chunk: torch.Tensor, segment_bytes: int) -> list[torch.Tensor]:
    """Views of at most `segment_bytes` each covering the chunk ([] when it is empty)."""
    if chunk.numel() == 0:
        return []
    return list(chunk.split(max(1, segment_bytes // chunk.element_size())))

"""Recursive halving-doubling all-reduce (Rabenseifner): bandwidth-optimal in log₂p steps.

Phase 1, reduce-scatter by recursive halving. Start with the whole vector as this rank's
range. At each step, with distance d = p/2, p/4, ..., 1, rank r exchanges with partner
r XOR d: it keeps one half of its current range (the upper half if r's bit d is set),
sends the other half, and adds the partner's copy of the half it keeps. After log₂ p steps
rank r owns block r (n/p elements), summed over all ranks.

Phase 2, all-gather by recursive doubling: replay the steps backwards; at each, send the
range kept and receive the range given away, doubling what the rank holds.

    T_hd = 2·log₂p·α + 2(p−1)/p·n·β + (p−1)/p·n·γ   (+ 2(α + nβ) + nγ if p ≠ 2^k)

The ring's bandwidth term with only log₂ p latency terms. Non-powers of two fold their
extra ranks in and out (see fold.py).
"""

from __future__ import annotations

import torch

from hpclab.comm.fold import fold_in, fold_out
from hpclab.comm.p2p import Comm


def all_reduce(comm: Comm, x: torch.Tensor, op: str) -> None:
    fold = fold_in(comm, x, op)
    step = fold.steps
    log_p = fold.p2.bit_length() - 1
    if fold.new_rank is not None:
        me, n = fold.new_rank, x.numel()
        bounds = [b * n // fold.p2 for b in range(fold.p2 + 1)]    # p' blocks

        def blocks(lo_hi):
            return x[bounds[lo_hi[0]]:bounds[lo_hi[1]]]

        mine, history = (0, fold.p2), []

        # Phase 1: reduce-scatter by recursive halving
        distance = fold.p2 // 2
        while distance >= 1:
            partner = fold.real(me ^ distance)
            lo, hi = mine
            mid = (lo + hi) // 2
            keep, give = ((mid, hi), (lo, mid)) if me & distance else ((lo, mid), (mid, hi))
            comm.exchange_reduce(blocks(give), partner, blocks(keep), partner, op, step=step,
                                 phase="reduce-scatter", chunk=give[0])
            history.append((partner, keep, give))
            mine, distance, step = keep, distance // 2, step + 1

        # Phase 2: all-gather by recursive doubling, the halving steps backwards
        for partner, keep, give in reversed(history):
            comm.exchange(blocks(keep), partner, blocks(give), partner, step=step,
                          phase="all-gather", chunk=keep[0])
            step += 1
    else:
        step += 2 * log_p
    fold_out(comm, x, fold, step)

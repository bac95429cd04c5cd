"""Recursive doubling all-reduce: log₂ p exchanges of the whole vector.

At step k = 0, 1, ..., log₂p − 1 rank r exchanges its whole vector with partner r XOR 2^k
and adds what it receives. After step k each rank holds the sum over a group of 2^(k+1)
ranks; after log₂ p steps, the sum over all.

    T_rd = log₂p·(α + n·β + n·γ)        (+ 2(α + nβ) + nγ when p is not a power of two)

Fewest steps of all (best for small messages, where α dominates), but it sends the whole
vector log₂ p times, so for large messages the ring wins. Non-powers of two fold their
extra ranks in and out (see fold.py).
"""

from __future__ import annotations

import torch

from hpclab.comm.fold import fold_in, fold_out
from hpclab.comm.p2p import Comm


def all_reduce(comm: Comm, x: torch.Tensor, op: str) -> None:
    fold = fold_in(comm, x, op)
    step = fold.steps
    if fold.new_rank is not None:
        distance = 1
        while distance < fold.p2:
            partner = fold.real(fold.new_rank ^ distance)
            # swap whole vectors with the partner, adding theirs into ours as it arrives
            comm.exchange_reduce(x, partner, x, partner, op, step=step, phase="exchange")
            distance, step = 2 * distance, step + 1
    else:
        step += fold.p2.bit_length() - 1
    fold_out(comm, x, fold, step)

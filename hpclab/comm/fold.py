"""Non-powers of two for the recursive algorithms: fold the extra ranks in, then out.

Recursive doubling and halving pair rank r with r XOR 2^k, which needs p = 2^k. The
standard fix-up (Thakur, Rabenseifner & Gropp 2005, as in MPICH): with p' = 2^⌊log₂ p⌋
and e = p − p' extra ranks,

  fold in:   among ranks 0..2e−1, each even rank sends its vector to the odd rank above
             it, which adds it. The even ranks now sit out; the other p' ranks renumber
             themselves 0..p'−1 and run the power-of-two algorithm.
  fold out:  each odd rank sends the result back to its even partner.

Cost when p is not a power of two: 2(α + n·β) + n·γ on top of the p'-rank algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hpclab.comm.p2p import Comm


@dataclass
class Fold:
    p2: int                 # p', the power of two that runs the algorithm
    extra: int              # e = p − p'
    new_rank: int | None    # this rank's number among the p' (None: sits out)
    steps: int              # steps the fold-in used (0 or 1): the algorithm starts after

    def real(self, new: int) -> int:
        """The group rank of the rank numbered `new` among the p'."""
        return 2 * new + 1 if new < self.extra else new + self.extra


def fold_in(comm: Comm, x: torch.Tensor, op: str) -> Fold:
    p, r = comm.world_size, comm.rank
    p2 = 1 << (p.bit_length() - 1)   # the power of two at or below p
    extra = p - p2
    if r >= 2 * extra:
        return Fold(p2, extra, r - extra, 1 if extra else 0)
    if r % 2 == 0:
        comm.send(x, r + 1, step=0, phase="fold in")
        return Fold(p2, extra, None, 1)
    comm.recv_reduce(x, r - 1, op, step=0, phase="fold in")
    return Fold(p2, extra, r // 2, 1)


def fold_out(comm: Comm, x: torch.Tensor, fold: Fold, step: int) -> None:
    r = comm.rank
    if r >= 2 * fold.extra:
        return
    if r % 2 == 0:
        comm.recv(x, r + 1, step=step, phase="fold out")
    else:
        comm.send(x, r - 1, step=step, phase="fold out")

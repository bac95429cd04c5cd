"""Binary-tree collectives: reduce up the tree, broadcast down it.

The ranks form a binary heap rooted at `root`: with v = (r − root) mod p, the parent of v
is (v−1)//2 and its children are 2v+1 and 2v+2. The tree has depth d = ⌊log₂ p⌋.

Reduce (d levels, leaves first). A rank receives the whole vector from each child, adds
them, then sends the sum to its parent. Broadcast (d levels, root first). A rank receives
from its parent, then sends to each child.

A parent serves two children one after the other, so each level costs up to two messages:

    T_tree ≈ 2d·(α + n·β + n·γ)  +  2d·(α + n·β)        (reduce + broadcast)

(exactly, see cost_model.py: the critical path through the heap). Logarithmic in p like
recursive doubling, but every level moves the whole vector: good for small messages and
for reduce/broadcast, which have no all-to-all pattern to exploit.
"""

from __future__ import annotations

import torch

from hpclab.comm.p2p import Comm


def all_reduce(comm: Comm, x: torch.Tensor, op: str) -> None:
    reduce(comm, x, op, root=0)
    broadcast(comm, x, root=0, first_step=depth(comm.world_size - 1))


def reduce(comm: Comm, x: torch.Tensor, op: str, root: int) -> None:
    """Afterwards x on `root` holds the reduction over all ranks (others: partial sums)."""
    v, parent, children = _family(comm, root)
    height = depth(comm.world_size - 1)
    for child in children:     # one child after the other, adding as the pieces arrive
        comm.recv_reduce(x, child, op, step=height - depth(v) - 1, phase="reduce")
    if parent is not None:
        comm.send(x, parent, step=height - depth(v), phase="reduce")


def broadcast(comm: Comm, x: torch.Tensor, root: int, first_step: int = 0) -> None:
    v, parent, children = _family(comm, root)
    if parent is not None:
        comm.recv(x, parent, step=first_step + depth(v) - 1, phase="broadcast")
    sends = [comm.isend(x, child, step=first_step + depth(v), phase="broadcast")
             for child in children]
    comm.wait(*sends)


def depth(v: int) -> int:
    """Depth of heap node v: 0 for the root, ⌊log₂(v+1)⌋ in general."""
    return (v + 1).bit_length() - 1


def _family(comm: Comm, root: int) -> tuple[int, int | None, list[int]]:
    """(v, parent's rank or None, children's ranks) of this rank in the heap at `root`."""
    p = comm.world_size
    v = (comm.rank - root) % p
    parent = None if v == 0 else ((v - 1) // 2 + root) % p
    children = [(c + root) % p for c in (2 * v + 1, 2 * v + 2) if c < p]
    return v, parent, children

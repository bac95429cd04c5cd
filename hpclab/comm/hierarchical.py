"""Hierarchical all-reduce: rings inside each node, a ring across the nodes, rings again.

p = N·k ranks on N nodes of k ranks each, numbered node by node: rank r is local rank
ℓ = r mod k on node ν = ⌊r/k⌋ (as hpclab.connect and run_local(..., ranks_per_node=k)
number them). Links inside a node are fast (α_intra, β_intra: shared memory, NVLink),
links between nodes slow (α_inter, β_inter: the network). The flat ring sends 2(p−1)/p·n
bytes over the network per node; this algorithm sends 2(N−1)/N·n:

Phase 1, reduce-scatter inside each node (a ring of the node's k ranks). Afterwards
local rank ℓ holds chunk ℓ of x (n/k elements) summed over its node.

Phase 2, all-reduce across the nodes (a ring of the N ranks with the same local rank ℓ,
one on each node). Afterwards local rank ℓ holds chunk ℓ summed over all p ranks. The k
rings run at once and share each node's network link.

Phase 3, all-gather inside each node (the node's ring again). Afterwards every rank has
every chunk: the whole sum.

    T_hier = 2(k−1)·α_intra + 2(k−1)/k·n·β_intra        (phases 1 and 3)
           + 2(N−1)·α_inter + 2(N−1)/N·n·β_inter         (phase 2: k rings of n/k bytes
                                                          sharing the link)
           + (k−1)/k·n·γ + (N−1)/p·n·γ

against the flat ring's 2(p−1)·α_inter + 2(p−1)/p·n·β_inter + (p−1)/p·n·γ (each of its
steps waits for the pair that crosses a node boundary). Each phase is ring.py's code run
on a sub-ring: `SubComm` renames the ranks of a sub-ring to 0 … m−1 for it.
"""

from __future__ import annotations

import os

import torch

from hpclab.comm import ring
from hpclab.comm.p2p import Comm, split


class SubComm:
    """The ranks `members` of `comm` seen as a group of their own (ranks 0 … m−1), for
    ring.py's functions; messages keep the parent's ranks, phase names get `name` in front
    and step numbers count on from `first_step`."""

    def __init__(self, comm: Comm, members: list[int], name: str, first_step: int = 0):
        self.comm, self.members, self.name, self.first_step = comm, members, name, first_step
        self.rank = members.index(comm.rank)
        self.world_size = len(members)

    def exchange(self, send, dst, recv, src, *, step, phase, chunk=0):
        self.comm.exchange(send, self.members[dst], recv, self.members[src],
                           step=self.first_step + step, phase=f"{self.name} {phase}",
                           chunk=chunk)

    def exchange_reduce(self, send, dst, x, src, op, *, step, phase, chunk=0):
        self.comm.exchange_reduce(send, self.members[dst], x, self.members[src], op,
                                  step=self.first_step + step, phase=f"{self.name} {phase}",
                                  chunk=chunk)


def all_reduce(comm: Comm, x: torch.Tensor, op: str, ranks_per_node: int | None = None) -> None:
    k = check_ranks_per_node(comm.world_size, ranks_per_node)
    N, r = comm.world_size // k, comm.rank
    node, local = divmod(r, k)
    in_node = [node * k + j for j in range(k)]      # my node's ring
    across = [m * k + local for m in range(N)]      # the ring of local rank ℓ on every node

    ring.reduce_scatter(SubComm(comm, in_node, "node"), x, op)
    mine = split(x, k)[local]
    ring.all_reduce(SubComm(comm, across, "across nodes", first_step=k - 1), mine, op)
    ring.all_gather(SubComm(comm, in_node, "node"), x, first_step=k - 1 + 2 * (N - 1))

def check_ranks_per_node(p: int, ranks_per_node: int | None) -> int:
    """k = ranks per node: as given, else torchrun's LOCAL_WORLD_SIZE (hpclab.connect and
    run_local set it too); it must divide p."""
    k = ranks_per_node
    if k is None:
        if "LOCAL_WORLD_SIZE" not in os.environ:
            raise ValueError('algorithm="hierarchical" needs the ranks per node: pass '
                             "ranks_per_node=k (or costs from calibrate on the cluster), or "
                             "run where LOCAL_WORLD_SIZE is set (hpclab.connect, run_local, "
                             "torchrun)")
        k = int(os.environ["LOCAL_WORLD_SIZE"])
    if not isinstance(k, int) or k < 1 or p % k:
        raise ValueError(f"ranks_per_node must be a positive int dividing the world size "
                         f"p={p}, got {k!r}")
    return k

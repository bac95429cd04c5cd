"""DistributedSampler: which samples rank r sees, epoch after epoch, resumable mid-epoch.

Each epoch e draws one permutation π_e of the n sample indices (the same on every rank,
because every rank seeds its generator with seed + e), pads it to a multiple of p by
repeating its head (or drops the tail with drop_last), and gives rank r every p-th entry:

    shard_r = π_e[r], π_e[r + p], π_e[r + 2p], ...        (n_r = ⌈n/p⌉ indices)

The shards are disjoint and together cover the epoch. Because they interleave, the b-th
local batch of size B/p on every rank together form exactly the b-th global batch of
size B of π_e — which is why p ranks reproduce one process with batch B. This is the
same rule as torch.utils.data.DistributedSampler (the tests compare the index sets).

Resumable: `state_dict()` holds the epoch and how many of this epoch's indices have been
handed out, so a run restored from a checkpoint continues with the very next sample.

    sampler = DistributedSampler(len(dataset), num_replicas=ctx.world_size, rank=ctx.rank)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for idx in sampler.batches(batch_size=32):
            x, y = X[idx], Y[idx]
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


class DistributedSampler:
    def __init__(self, dataset, num_replicas: int, rank: int, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False):
        n = dataset if isinstance(dataset, int) else len(dataset)
        if n < 1:
            raise ValueError(f"dataset must hold at least 1 sample, got {n}")
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        if drop_last and n < num_replicas:
            raise ValueError(f"drop_last with {n} samples and {num_replicas} replicas "
                             "leaves every rank empty")
        self.n, self.num_replicas, self.rank = n, num_replicas, rank
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.num_samples = (n // num_replicas if drop_last else math.ceil(n / num_replicas))
        self.total_size = self.num_samples * num_replicas
        self.epoch = 0
        self.position = 0     # indices of this epoch already handed out on this rank

    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch` (a new permutation); a resumed position is kept only if the
        epoch is the one the position belongs to."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def indices(self) -> list[int]:
        """This rank's shard of the current epoch (all of it, ignoring the position)."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.drop_last:
            order = order[:self.total_size]
        else:
            pad = self.total_size - len(order)
            order += (order * math.ceil(pad / len(order)))[:pad]
        return order[self.rank:self.total_size:self.num_replicas]

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        shard = self.indices()
        while self.position < len(shard):
            i = shard[self.position]
            self.position += 1
            yield i

    def batches(self, batch_size: int, drop_last: bool = True) -> Iterator[list[int]]:
        """Consecutive local batches from the current position (the last, short one only
        if drop_last=False). The position advances as batches are taken."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        shard = self.indices()
        while self.position < len(shard):
            batch = shard[self.position:self.position + batch_size]
            if len(batch) < batch_size and drop_last:
                return
            self.position += len(batch)
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "num_replicas": self.num_replicas}

    def load_state_dict(self, state: dict) -> None:
        if state.get("num_replicas", self.num_replicas) != self.num_replicas:
            # positions count this rank's shard; with another p the shards differ, so
            # restart the epoch rather than silently skip or repeat samples
            self.epoch, self.position = state["epoch"], 0
            return
        self.epoch, self.position, self.seed = state["epoch"], state["position"], state["seed"]

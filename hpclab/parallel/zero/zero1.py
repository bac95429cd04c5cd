"""ZeRO stage 1: shard the optimizer state (P_os in the ZeRO paper).

Data parallelism keeps, on each of the N_d ranks, Ψ parameters in full: 2Ψ bytes of fp16
parameters, 2Ψ of fp16 gradients and KΨ of optimizer state (K = 12 for mixed-precision
Adam: fp32 master copy, m and v). Stage 1 keeps parameters and gradients but cuts the
optimizer state into N_d shards:

    memory per rank = 2Ψ + 2Ψ + KΨ/N_d            (DP: 2Ψ + 2Ψ + KΨ)

One step, on rank r (after backward has left the full local gradient g_r in p.grad):

    1. reduce-scatter:  ḡ[shard r] = (1/N_d) · Σ_i g_i[shard r]   (rank r gets its shard)
    2. the optimizer updates θ[shard r] with ḡ[shard r] and its state shard only
    3. all-gather:      θ ← [θ[shard 0], θ[shard 1], ..., θ[shard N_d−1]] on every rank

Each collective moves Ψ·(N_d−1)/N_d elements per rank (the ring), so a step sends
2Ψ·(N_d−1)/N_d per rank: the same as DP's all-reduce, which *is* a reduce-scatter followed
by an all-gather. Stage 1 does nothing but split the all-reduce around the optimizer.

    opt = ZeRO1(model.parameters(), hpclab.optim.Adam, lr=1e-3)
    loss_fn(model(x), y).backward()      # plain local backward, nothing communicated
    opt.step()                           # steps 1-3
    opt.zero_grad()

Parameters are grouped in buckets of `bucket_cap_mb` (each a flat buffer padded to a
multiple of N_d); torch's counterpart is `torch.distributed.optim.ZeroRedundancyOptimizer`
(which partitions whole parameters and expects DDP to all-reduce the gradients).
"""

from __future__ import annotations

import torch

from hpclab.parallel.zero.base import ShardedOptimizer
from hpclab.parallel.zero.shard import bucket_by_size, check_params

MiB = 1 << 20


class ZeRO1(ShardedOptimizer):
    """Optimizer-state sharding: reduce-scatter, step the shard, all-gather, in step()."""

    stage = 1

    def __init__(self, params, optimizer_class, *, bucket_cap_mb: float = 25, group=None,
                 timeout: float = 60.0, **defaults):
        params = check_params(params, type(self).__name__)
        super().__init__(params, bucket_by_size(params, bucket_cap_mb * MiB), optimizer_class,
                         keep_full=True, group=group, timeout=timeout, **defaults)

    @torch.no_grad()
    def step(self) -> None:
        for g in self.groups:                  # 1. reduce-scatter with an average
            self._reduce_scatter(g)
        self._step_shards()                    # 2. step this rank's shard only
        for g in self.groups:                  # 3. all-gather the updated parameters
            g.shard.grad = None                #    (the gradient shard has done its work)
            self._gather(g)

"""ZeRO stage 2: shard the gradients too (P_os+g in the ZeRO paper).

Stage 1 still holds the full gradient (2Ψ bytes in fp16) until the step. Stage 2 reduces
gradients *during* backward, bucket by bucket, and keeps only its shard of each:

    memory per rank = 2Ψ + (2 + K)·Ψ/N_d         (stage 1: 2Ψ + 2Ψ + KΨ/N_d)

During backward, on rank r, for each bucket b as soon as all its gradients are made (a
post-accumulate-grad hook counts them):

    1. reduce-scatter:  ḡ_b[shard r] = (1/N_d) · Σ_i g_{i,b}[shard r]
    2. free the full gradients of bucket b (p.grad = None): only Ψ_b/N_d of them stay

and in step():

    3. the optimizer updates θ[shard r] with ḡ[shard r] and its state shard only
    4. all-gather:  θ ← [θ[shard 0], ..., θ[shard N_d−1]] on every rank

Communication per step and rank: 2Ψ·(N_d−1)/N_d, as DP and stage 1 (the same two
collectives, at other moments). Micro-batches accumulate into the gradient shards (each
backward reduce-scatters its buckets).

    opt = ZeRO2(model.parameters(), hpclab.optim.Adam, bucket_cap_mb=25, lr=1e-3)
    loss_fn(model(x), y).backward()      # steps 1-2, bucket by bucket
    opt.step()                           # steps 3-4
    opt.zero_grad()

Buckets are filled in reverse parameter order (backward makes the last layer's gradients
first) and reduced strictly in bucket order, so every rank calls the same collectives in
the same order. A gradient that backward never makes (an unused parameter) counts as zero:
a callback at the end of backward reduces the buckets still waiting.
"""

from __future__ import annotations

import torch
from torch.autograd import Variable

from hpclab.parallel.zero.base import ShardedOptimizer
from hpclab.parallel.zero.shard import ShardedGroup, bucket_by_size, check_params
from hpclab.parallel.zero.zero1 import MiB


class ZeRO2(ShardedOptimizer):
    """Gradient + optimizer-state sharding: reduce-scatter in backward hooks."""

    stage = 2

    def __init__(self, params, optimizer_class, *, bucket_cap_mb: float = 25, group=None,
                 timeout: float = 60.0, **defaults):
        params = check_params(params, type(self).__name__)
        super().__init__(params, bucket_by_size(params, bucket_cap_mb * MiB), optimizer_class,
                         keep_full=True, group=group, timeout=timeout, **defaults)
        self._bucket_of = {id(p): g for g in self.groups for p in g.params}
        self._next = 0              # the next bucket to reduce, in bucket order
        self._in_backward = False
        for p in self.params:
            p.register_post_accumulate_grad_hook(self._on_grad_ready)

    def _on_grad_ready(self, p: torch.Tensor) -> None:
        if not self._in_backward:
            self._in_backward, self._next = True, 0
            for g in self.groups:
                g.ready = 0
            Variable._execution_engine.queue_callback(self._finish_backward)
        self._bucket_of[id(p)].ready += 1
        while self._next < len(self.groups) and self._complete(self.groups[self._next]):
            self._reduce_bucket(self.groups[self._next])
            self._next += 1

    @staticmethod
    def _complete(g: ShardedGroup) -> bool:
        return g.ready == len(g.params)

    @torch.no_grad()
    def _reduce_bucket(self, g: ShardedGroup) -> None:
        self._reduce_scatter(g)                # 1. reduce-scatter the bucket
        for p in g.params:                     # 2. free its full gradients
            p.grad = None

    def _finish_backward(self) -> None:
        """Runs when autograd has finished: buckets with unused parameters are reduced
        now (their missing gradients as zeros), still in bucket order."""
        self._in_backward = False
        for g in self.groups[self._next:]:
            self._reduce_bucket(g)
        self._next = len(self.groups)

    @torch.no_grad()
    def step(self) -> None:
        self._step_shards()                    # 3. step this rank's shard only
        for g in self.groups:                  # 4. all-gather the updated parameters
            g.shard.grad = None
            self._gather(g)

"""Naive data parallel: one hook per parameter, all-reduce its gradient, divide by p.

The first step of lecture D1. Rank r computes the gradient g_r of its own shard of the
global batch B (|shard| = B/p); as soon as autograd has accumulated a parameter's
gradient, a hook replaces it by the average over the p ranks

    ḡ = (1/p) · Σ_r g_r          (an all-reduce, then a division by p)

which equals the gradient of the whole batch, so p ranks follow the same trajectory as
one process with batch B.

    model = NaiveDataParallel(net)          # rank 0's weights are broadcast to all
    loss_fn(model(x), y).backward()         # every gradient arrives averaged
    optimizer.step()

What it costs: one all-reduce per parameter, each paying the latency 2(p−1)·α of a ring
however small the tensor, and each blocking backward until it is done. The bucketed
DistributedDataParallel (ddp.py) packs gradients into a few buckets and reduces them on
a second thread while backward goes on.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class NaiveDataParallel(nn.Module):
    """Wrap `module` so that each gradient is averaged over `group` as soon as it exists."""

    def __init__(self, module: nn.Module, group=None):
        super().__init__()
        if not dist.is_initialized():
            raise RuntimeError("NaiveDataParallel needs a process group: run it on engines "
                               "(cluster.run) or in run_local, or call "
                               "dist.init_process_group first")
        self.module, self.group = module, group
        self.world_size = dist.get_world_size(group)
        src = dist.get_global_rank(group, 0) if group is not None else 0
        with torch.no_grad():   # all replicas start from rank 0's weights
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=src, group=group)
        for p in module.parameters():
            if p.requires_grad:
                p.register_post_accumulate_grad_hook(self._average)

    def _average(self, param: torch.Tensor) -> None:
        dist.all_reduce(param.grad, group=self.group)
        param.grad /= self.world_size

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

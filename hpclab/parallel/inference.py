"""Distributed inference: many requests, many ranks.

Data-parallel inference is the easy win: every rank holds the whole model and predicts a
contiguous shard of the inputs; an all-gather puts the predictions back in order. With p
ranks the throughput grows up to p× (no gradients, no optimizer: communication is one
gather of the outputs). When the model does not fit on one device, the pipeline-parallel
forward (`hpclab.parallel.pipeline.pipeline_forward`) splits the layers instead.

    y = data_parallel_predict(ctx, model, x, batch_size=256)   # same y on every rank
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of rank's contiguous shard of n items (sizes differ by at most 1)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """model(x) in batches, in eval mode (the single-process reference)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    try:
        if len(x) == 0:
            return model(x)
        return torch.cat([model(chunk) for chunk in x.split(batch_size)])
    finally:
        model.train(was_training)


@torch.no_grad()
def data_parallel_predict(ctx, model: nn.Module, x: torch.Tensor,
                          batch_size: int = 256) -> torch.Tensor:
    """Each rank predicts its shard of x; returns all predictions, in order, on every rank."""
    start, stop = shard_bounds(len(x), ctx.rank, ctx.world_size)
    local = predict(model, x[start:stop], batch_size)
    # gloo gathers equal shapes only: pad every shard to the longest
    longest = -(-len(x) // ctx.world_size)
    padded = local.new_zeros(longest, *local.shape[1:])
    padded[:len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded, group=ctx.group)
    sizes = [b - a for a, b in (shard_bounds(len(x), r, ctx.world_size)
                                for r in range(ctx.world_size))]
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])

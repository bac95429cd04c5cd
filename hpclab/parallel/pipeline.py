"""Pipeline parallelism (GPipe): consecutive layers on consecutive ranks, micro-batches
flowing through them.

A model f = f_p ∘ … ∘ f_1 is split into p stages; rank r holds f_r. A batch is cut into
m micro-batches. GPipe's schedule: every stage runs the forward of all m micro-batches
(sending activations a_r to rank r+1), then the backward of all of them in reverse
(sending ∂J/∂a_{r−1} to rank r−1). Gradients of the m micro-batches accumulate, so one
pipeline step equals one step on the whole batch.

While the pipe fills and drains some stages wait: with equal stage times the idle
("bubble") fraction is

    bubble(p, m) = (p − 1) / (m + p − 1)

so more micro-batches shrink the bubble, at the price of smaller matrix products.

    stages = split_sequential(model, ctx.world_size)
    stage = stages[ctx.rank]
    loss = pipeline_step(stage, ctx, x if ctx.rank == 0 else None,
                         y if ctx.rank == ctx.world_size - 1 else None,
                         loss_fn=nn.functional.cross_entropy, n_micro=4)
    # loss is returned on the last rank; every stage now holds ∂J/∂θ_r in .grad
    y_hat = pipeline_forward(stage, ctx, x if ctx.rank == 0 else None, n_micro=4)
    # inference: the model's output on the last rank, no gradients kept
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

_HEADER = 8   # ndim + up to 7 dimensions, sent before every activation/gradient


def bubble_fraction(p: int, m: int) -> float:
    """Idle fraction of a GPipe step with p equal stages and m micro-batches."""
    if p < 1 or m < 1:
        raise ValueError(f"p and m must be >= 1, got p={p}, m={m}")
    return (p - 1) / (m + p - 1)


def split_sequential(model: nn.Sequential, p: int) -> list[nn.Sequential]:
    """Cut a Sequential into p contiguous stages with nearly equal numbers of layers."""
    n = len(model)
    if not 1 <= p <= n:
        raise ValueError(f"cannot split {n} layers into {p} stages; need 1 <= p <= {n}")
    sizes = [n // p + (1 if i < n % p else 0) for i in range(p)]
    bounds = [sum(sizes[:i]) for i in range(p + 1)]
    return [nn.Sequential(*model[bounds[i]:bounds[i + 1]]) for i in range(p)]


def _send(t: torch.Tensor, dst: int, group) -> None:
    if t.dim() >= _HEADER:
        raise ValueError(f"activations with {t.dim()} dimensions are not supported (max 7)")
    header = torch.zeros(_HEADER, dtype=torch.int64)
    header[0] = t.dim()
    header[1:1 + t.dim()] = torch.tensor(t.shape, dtype=torch.int64)
    dist.send(header, dst, group=group)
    dist.send(t.contiguous(), dst, group=group)


def _recv(src: int, dtype: torch.dtype, group) -> torch.Tensor:
    header = torch.empty(_HEADER, dtype=torch.int64)
    dist.recv(header, src, group=group)
    ndim = int(header[0])
    t = torch.empty(header[1:1 + ndim].tolist(), dtype=dtype)
    dist.recv(t, src, group=group)
    return t


@dataclass
class PipelineTimeline:
    """(rank, "F"|"B", micro-batch, t_start, t_end) of every stage operation — the lecture
    draws these as the GPipe diagram and measures the bubble."""
    events: list = field(default_factory=list)


def pipeline_step(stage: nn.Module, ctx, x: torch.Tensor | None, y: torch.Tensor | None,
                  loss_fn, n_micro: int, timeline: PipelineTimeline | None = None):
    """One GPipe forward+backward over m = n_micro micro-batches; the loss on the last rank.

    x is needed on rank 0 only, y on the last rank only. loss_fn must average over its
    batch (reduction="mean"); each micro-batch's loss is weighted by its share of the
    batch so the accumulated gradient is that of the whole-batch mean.
    """
    rank, p = ctx.rank, ctx.world_size
    first, last = rank == 0, rank == p - 1
    if n_micro < 1:
        raise ValueError(f"n_micro must be >= 1, got {n_micro}")
    if first and x is None:
        raise ValueError("rank 0 (the first stage) needs the input batch x")
    if last and y is None:
        raise ValueError(f"rank {rank} (the last stage) needs the targets y")
    dtype = next(stage.parameters()).dtype
    xs = x.tensor_split(n_micro) if first else [None] * n_micro
    ys = y.tensor_split(n_micro) if last else [None] * n_micro
    batch = len(y) if last else None

    def mark(kind, i, t0):
        if timeline is not None:
            timeline.events.append((rank, kind, i, t0, time.perf_counter()))

    inputs, outputs, total = [], [], 0.0
    for i in range(n_micro):                                  # phase 1: fill, forward
        inp = xs[i] if first else _recv(rank - 1, dtype, ctx.group).requires_grad_()
        t0 = time.perf_counter()
        out = stage(inp)
        if last:
            out = loss_fn(out, ys[i]) * (len(ys[i]) / batch)
            total += float(out.detach())
        mark("F", i, t0)
        if not last:
            _send(out.detach(), rank + 1, ctx.group)
        inputs.append(inp)
        outputs.append(out)
    for i in reversed(range(n_micro)):                        # phase 2: drain, backward
        grad = None if last else _recv(rank + 1, dtype, ctx.group)
        t0 = time.perf_counter()
        outputs[i].backward(grad)
        mark("B", i, t0)
        if not first:
            _send(inputs[i].grad, rank - 1, ctx.group)
    return total if last else None


@torch.no_grad()
def pipeline_forward(stage: nn.Module, ctx, x: torch.Tensor | None, n_micro: int):
    """Pipeline-parallel inference: f_p(…f_1(x)) on the last rank (None elsewhere).

    Micro-batches keep every stage busy once the pipe is full: stage r works on
    micro-batch i while stage r+1 works on micro-batch i−1.
    """
    rank, p = ctx.rank, ctx.world_size
    if n_micro < 1:
        raise ValueError(f"n_micro must be >= 1, got {n_micro}")
    if rank == 0 and x is None:
        raise ValueError("rank 0 (the first stage) needs the input batch x")
    dtype = next(stage.parameters()).dtype
    xs = x.tensor_split(n_micro) if rank == 0 else [None] * n_micro
    outs = []
    for i in range(n_micro):
        inp = xs[i] if rank == 0 else _recv(rank - 1, dtype, ctx.group)
        out = stage(inp)
        if rank == p - 1:
            outs.append(out)
        else:
            _send(out, rank + 1, ctx.group)
    return torch.cat(outs) if rank == p - 1 else None

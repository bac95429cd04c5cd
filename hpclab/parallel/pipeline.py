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

GPipe is one schedule among several: `gpipe(p, m, r)` is rank r's list of actions
(F0 … F_{m−1}, B_{m−1} … B0; pipeline_schedule.py), and pipeline_step runs it with the
executor every schedule shares (pipeline_executor.py). 1F1B (pipeline_1f1b.py) keeps the
bubble and holds fewer micro-batches; interleaved 1F1B (pipeline_interleaved.py) shrinks
the bubble.
"""

from __future__ import annotations

from torch import nn

from hpclab.parallel.pipeline_executor import Event, PipelineTimeline, run_schedule
from hpclab.parallel.pipeline_schedule import Action

__all__ = ["Action", "Event", "PipelineTimeline", "bubble_fraction", "gpipe",
           "pipeline_forward", "pipeline_step", "split_sequential"]


def gpipe(p: int, m: int, r: int) -> list[Action]:
    """Rank r's GPipe order: all m forwards, then the m backwards in reverse.

    Every rank holds all m micro-batches at its peak (n_r = m)."""
    if p < 1 or m < 1 or not 0 <= r < p:
        raise ValueError(f"need p >= 1, m >= 1 and 0 <= r < p, got p={p}, m={m}, r={r}")
    return [Action("F", i) for i in range(m)] + [Action("B", i) for i in reversed(range(m))]


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


def pipeline_step(stage: nn.Module, ctx, x, y, loss_fn, n_micro: int,
                  timeline: PipelineTimeline | None = None):
    """One GPipe forward+backward over m = n_micro micro-batches; the loss on the last rank.

    x is needed on rank 0 only, y on the last rank only. loss_fn must average over its
    batch (reduction="mean"); each micro-batch's loss is weighted by its share of the
    batch so the accumulated gradient is that of the whole-batch mean.
    """
    if n_micro < 1:
        raise ValueError(f"n_micro must be >= 1, got {n_micro}")
    return run_schedule(gpipe(ctx.world_size, n_micro, ctx.rank), stage, ctx, x, y, loss_fn,
                        n_micro, timeline=timeline, name="gpipe")


def pipeline_forward(stage: nn.Module, ctx, x, n_micro: int):
    """Pipeline-parallel inference: f_p(…f_1(x)) on the last rank (None elsewhere).

    Micro-batches keep every stage busy once the pipe is full: stage r works on
    micro-batch i while stage r+1 works on micro-batch i−1.
    """
    if n_micro < 1:
        raise ValueError(f"n_micro must be >= 1, got {n_micro}")
    return run_schedule([Action("F", i) for i in range(n_micro)], stage, ctx, x, None, None,
                        n_micro, name="gpipe-forward")

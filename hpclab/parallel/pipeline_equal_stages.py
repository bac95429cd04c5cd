"""Stages of known, equal cost, to measure a schedule's bubble against its formula.

The formulas (p − 1)/(m + p − 1) and (p − 1)/(v·m + p − 1) assume every stage takes the
same time t_f forward and t_b backward. Real layers on a shared CPU do not (other
processes take the cores), so to check a schedule we give each piece a `Sleep`: a layer
that returns its input and waits t_f in forward and t_b in backward. Sleeping needs no
core, so four ranks on a two-core laptop still run like four equal devices; a small
Linear in front keeps real gradients flowing.

    model = equal_stages(p=4, v=2, t_f=0.01, t_b=0.02)   # 8 pieces, each t_f/2, t_b/2
    chunks = split_interleaved(model, 4, 2, ctx.rank)
    timelines = timed_steps(ctx, "1f1b", m=8)            # on every rank (cluster.run, run_local)

`timed_steps` runs a schedule of SCHEDULES on such stages a few times, all ranks starting
together (a barrier), and returns this rank's PipelineTimeline of each step; the bench
(`hpclab bench pipeline`) and lecture D3 merge the ranks' events into one timeline.
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist
from torch import nn

from hpclab.parallel.pipeline import gpipe, split_sequential
from hpclab.parallel.pipeline_1f1b import one_f_one_b
from hpclab.parallel.pipeline_executor import PipelineTimeline, run_schedule
from hpclab.parallel.pipeline_interleaved import interleaved_1f1b, split_interleaved

SCHEDULES = {"gpipe": gpipe, "1f1b": one_f_one_b, "interleaved": interleaved_1f1b}


class _Sleep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, t_f, t_b):
        time.sleep(t_f)
        ctx.t_b = t_b
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        time.sleep(ctx.t_b)
        return grad, None, None


class Sleep(nn.Module):
    """Identity that takes t_f seconds forward and t_b seconds backward."""

    def __init__(self, t_f: float, t_b: float):
        super().__init__()
        if t_f < 0 or t_b < 0:
            raise ValueError(f"t_f and t_b must be >= 0 seconds, got t_f={t_f}, t_b={t_b}")
        self.t_f, self.t_b = t_f, t_b

    def forward(self, x):
        return _Sleep.apply(x, self.t_f, self.t_b)


def equal_stages(p: int, v: int = 1, t_f: float = 0.01, t_b: float = 0.02, width: int = 16,
                 seed: int = 0) -> nn.Sequential:
    """p·v pieces [Linear(width, width), Sleep(t_f/v, t_b/v)]: every rank's share of the
    model costs t_f forward and t_b backward, whatever v."""
    if p < 1 or v < 1:
        raise ValueError(f"p and v must be >= 1, got p={p}, v={v}")
    torch.manual_seed(seed)
    layers = []
    for _ in range(p * v):
        layers += [nn.Linear(width, width), Sleep(t_f / v, t_b / v)]
    return nn.Sequential(*layers)


def timed_steps(ctx, schedule: str, m: int, v: int = 2, t_f: float = 0.01, t_b: float = 0.02,
                repeats: int = 3, width: int = 16) -> list[PipelineTimeline]:
    """`repeats` steps of `schedule` on equal stages (v chunks per rank if interleaved)
    after one warm-up step; this rank's timeline of each."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {schedule!r}")
    p, r = ctx.world_size, ctx.rank
    v = v if schedule == "interleaved" else 1
    model = equal_stages(p, v, t_f, t_b, width)
    chunks = split_interleaved(model, p, v, r) if v > 1 else [split_sequential(model, p)[r]]
    actions = (interleaved_1f1b(p, m, r, v) if v > 1 else SCHEDULES[schedule](p, m, r))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4 * m, width, generator=g), torch.randn(4 * m, width, generator=g)
    out = []
    for _ in range(repeats + 1):
        timeline = PipelineTimeline()
        dist.barrier(group=ctx.group)
        run_schedule(actions, chunks, ctx, x if r == 0 else None, y if r == p - 1 else None,
                     nn.functional.mse_loss, m, timeline=timeline, name=schedule)
        out.append(timeline)
    return out[1:]

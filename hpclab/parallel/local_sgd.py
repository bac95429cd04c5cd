"""Local SGD: every rank takes H optimizer steps alone, then the models are averaged.

Synchronous data parallelism communicates every step. Local SGD (periodic model
averaging) communicates every H steps, cutting communication by H×:

    θ_i ← θ_i − η ∇J_i(θ_i)          on every rank i, each step
    θ_i ← (1/p) Σ_j θ_j              every H steps

H = 1 with plain SGD is exactly synchronous data parallelism (averaging the updated
parameters equals averaging the gradients when all ranks start from the same θ). Larger H
sends less but lets the replicas drift apart; the lecture measures that trade-off.

    averager = PeriodicModelAverager(model.parameters(), period=H)
    for batch in loader:
        loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
        averager.step()          # averages after steps H, 2H, 3H ...
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist


@torch.no_grad()
def average_parameters(params: Iterable[torch.Tensor], group=None) -> None:
    """θ ← (1/p) Σ_j θ_j for every tensor, in one all-reduce of a flat buffer."""
    params = [p for p in params]
    if not params:
        return
    flat = torch.cat([p.reshape(-1) for p in params])
    dist.all_reduce(flat, group=group)
    flat /= dist.get_world_size(group)
    offset = 0
    for p in params:
        p.copy_(flat[offset:offset + p.numel()].view_as(p))
        offset += p.numel()


class PeriodicModelAverager:
    """Average the given parameters across ranks after every `period` local steps."""

    def __init__(self, params: Iterable[torch.Tensor], period: int, group=None):
        if not isinstance(period, int) or period < 1:
            raise ValueError(f"period must be a positive int (steps between averages), "
                             f"got {period!r}")
        self.params, self.period, self.group = list(params), period, group
        self.local_steps = 0
        self.averages = 0

    def step(self) -> bool:
        """Count one local step; average if it completes a period. True if averaged."""
        self.local_steps += 1
        if self.local_steps % self.period:
            return False
        average_parameters(self.params, self.group)
        self.averages += 1
        return True

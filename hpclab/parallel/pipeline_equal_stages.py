"""Stages of known, equal cost, to measure a schedule's bubble against its formula.

The formulas (p − 1)/(m + p − 1) and (p − 1)/(v·m + p − 1) assume every stage takes the
same time t_f forward and t_b backward. Real layers on a shared CPU do not (other
processes take the cores), so to check a schedule we give each piece a `Sleep`: a layer
that returns its input and waits t_f in forward and t_b in backward. Sleeping needs no
core, so four ranks on a two-core laptop still run like four equal devices; a small
Linear in front keeps real gradients flowing.

    model = equal_stages(p=4, v=2, t_f=0.01, t_b=0.02)   # 8 pieces, each t_f/2, t_b/2
    chunks = split_interleaved(model, 4, 2, ctx.rank)
"""

from __future__ import annotations

import time

import torch
from torch import nn


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

"""Tensor parallelism: one linear layer split across p ranks (Megatron-LM style).

A linear layer computes Y = X Wᵀ + b with W of shape (out, in). Two ways to cut W:

  column parallel — split the *outputs*: W = [W₁; …; W_p] (rows of W, columns of Wᵀ).
      rank i computes Y_i = X W_iᵀ + b_i, a slice of Y's features.
      forward : X is needed whole on every rank         (f: identity)
      backward: ∂J/∂X = Σ_i ∂J/∂Y_i W_i                  (f: all-reduce of ∂J/∂X)
  row parallel — split the *inputs*: W = [W₁ … W_p], X = [X₁ … X_p] along features.
      rank i computes the partial sum X_i W_iᵀ, and Y = Σ_i X_i W_iᵀ + b
      forward : all-reduce of the partial sums           (g: all-reduce)
      backward: ∂J/∂Y is the same on every rank          (g: identity)

A column-parallel layer followed by a row-parallel one (an MLP block) needs exactly one
all-reduce forward and one backward: the split outputs of the first are the split inputs
of the second. The four communication operators below are autograd functions, so the
backward pass is derived by torch from their pairs.

    ctx = ...  # a DistContext (from cluster.run or run_local)
    fc1 = ColumnParallelLinear.from_linear(full_fc1, ctx)              # Y_i, not gathered
    fc2 = RowParallelLinear.from_linear(full_fc2, ctx, input_is_parallel=True)
    y = fc2(torch.relu(fc1(x)))   # equals full_fc2(relu(full_fc1(x))) on every rank
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def split_sizes(n: int, p: int) -> list[int]:
    """Sizes of p nearly equal parts of n (the first n mod p parts get one more)."""
    return [n // p + (1 if i < n % p else 0) for i in range(p)]


def _all_reduce(t: torch.Tensor, group) -> torch.Tensor:
    t = t.contiguous()
    dist.all_reduce(t, group=group)
    return t


def _all_gather_last_dim(t: torch.Tensor, sizes: list[int], group) -> torch.Tensor:
    # gloo gathers equal shapes only: pad every slice to the largest, trim after.
    width = max(sizes)
    padded = nn.functional.pad(t, (0, width - t.shape[-1])).contiguous()
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([part[..., :s] for part, s in zip(parts, sizes)], dim=-1)


class _CopyToParallel(torch.autograd.Function):
    """f: identity forward, all-reduce of the gradient backward."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x

    @staticmethod
    def backward(ctx, grad):
        return _all_reduce(grad.clone(), ctx.group), None


class _ReduceFromParallel(torch.autograd.Function):
    """g: all-reduce forward, identity backward."""

    @staticmethod
    def forward(ctx, x, group):
        return _all_reduce(x.clone(), group)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _GatherFromParallel(torch.autograd.Function):
    """all-gather along features forward, keep this rank's slice backward."""

    @staticmethod
    def forward(ctx, x, sizes, rank, group):
        ctx.sizes, ctx.rank = sizes, rank
        return _all_gather_last_dim(x, sizes, group)

    @staticmethod
    def backward(ctx, grad):
        return grad.split(ctx.sizes, dim=-1)[ctx.rank].contiguous(), None, None, None


class _ScatterToParallel(torch.autograd.Function):
    """keep this rank's feature slice forward, all-gather of the gradient backward."""

    @staticmethod
    def forward(ctx, x, sizes, rank, group):
        ctx.sizes, ctx.group = sizes, group
        return x.split(sizes, dim=-1)[rank].contiguous()

    @staticmethod
    def backward(ctx, grad):
        return _all_gather_last_dim(grad, ctx.sizes, ctx.group), None, None, None


class ColumnParallelLinear(nn.Module):
    """Rank i holds W_i (rows of W) and b_i; returns Y_i, or the whole Y if gather_output."""

    def __init__(self, in_features: int, out_features: int, ctx, bias: bool = True,
                 gather_output: bool = True, dtype=None, device=None):
        super().__init__()
        if out_features < ctx.world_size:
            raise ValueError(f"out_features ({out_features}) must be >= world_size "
                             f"({ctx.world_size}) to give every rank a column")
        self.ctx, self.gather_output = ctx, gather_output
        self.sizes = split_sizes(out_features, ctx.world_size)
        local = self.sizes[ctx.rank]
        kw = {"dtype": dtype, "device": device}
        self.weight = nn.Parameter(torch.empty(local, in_features, **kw))
        self.bias = nn.Parameter(torch.zeros(local, **kw)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)   # nn.Linear's default

    @classmethod
    def from_linear(cls, linear: nn.Linear, ctx, gather_output: bool = True):
        layer = cls(linear.in_features, linear.out_features, ctx,
                    bias=linear.bias is not None, gather_output=gather_output,
                    dtype=linear.weight.dtype, device=linear.weight.device)
        with torch.no_grad():
            layer.weight.copy_(linear.weight.split(layer.sizes, dim=0)[ctx.rank])
            if linear.bias is not None:
                layer.bias.copy_(linear.bias.split(layer.sizes)[ctx.rank])
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _CopyToParallel.apply(x, self.ctx.group)
        y = nn.functional.linear(x, self.weight, self.bias)
        if self.gather_output:
            y = _GatherFromParallel.apply(y, self.sizes, self.ctx.rank, self.ctx.group)
        return y


class RowParallelLinear(nn.Module):
    """Rank i holds W_i (columns of W); sums the partial products; b is added once."""

    def __init__(self, in_features: int, out_features: int, ctx, bias: bool = True,
                 input_is_parallel: bool = False, dtype=None, device=None):
        super().__init__()
        if in_features < ctx.world_size:
            raise ValueError(f"in_features ({in_features}) must be >= world_size "
                             f"({ctx.world_size}) to give every rank a row block")
        self.ctx, self.input_is_parallel = ctx, input_is_parallel
        self.sizes = split_sizes(in_features, ctx.world_size)
        kw = {"dtype": dtype, "device": device}
        self.weight = nn.Parameter(torch.empty(out_features, self.sizes[ctx.rank], **kw))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        # b is replicated: every rank adds it after the all-reduce, and every rank's copy
        # receives the same gradient.
        self.bias = nn.Parameter(torch.zeros(out_features, **kw)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, ctx, input_is_parallel: bool = False):
        layer = cls(linear.in_features, linear.out_features, ctx,
                    bias=linear.bias is not None, input_is_parallel=input_is_parallel,
                    dtype=linear.weight.dtype, device=linear.weight.device)
        with torch.no_grad():
            layer.weight.copy_(linear.weight.split(layer.sizes, dim=1)[ctx.rank])
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.input_is_parallel:
            x = _ScatterToParallel.apply(x, self.sizes, self.ctx.rank, self.ctx.group)
        partial = nn.functional.linear(x, self.weight)
        y = _ReduceFromParallel.apply(partial, self.ctx.group)
        return y + self.bias if self.bias is not None else y

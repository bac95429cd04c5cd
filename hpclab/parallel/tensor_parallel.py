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
of the second. Megatron-LM (Shoeybi et al. 2019, §3) names the two conjugate operators

    f = copy_to_parallel(x):     forward identity,    backward all-reduce
    g = reduce_from_parallel(x): forward all-reduce,  backward identity

and every communication operator here is an autograd function, so the backward pass is
derived by torch from these pairs. The collectives are hpclab.comm's, `algorithm`
"torch" by default (torch.distributed's: one c10d call per collective); with "ring" (or
any other of hpclab.comm's algorithms) a `comm.tracing()` block sees every message.
With sequence_parallel=True (sequence_parallel.py) the column-parallel layer all-gathers
its input along the sequence instead of f, and the row-parallel layer reduce-scatters
its output along the sequence instead of g. `gather_parameters` puts the shards back
together as the single-process tensors (each parameter records its cut, `tp_shard`).

    ctx = ...  # a DistContext (from cluster.run or run_local)
    fc1 = ColumnParallelLinear.from_linear(full_fc1, ctx, gather_output=False)   # Y_i
    fc2 = RowParallelLinear.from_linear(full_fc2, ctx, input_is_parallel=True)
    y = fc2(torch.relu(fc1(x)))   # equals full_fc2(relu(full_fc1(x))) on every rank
"""

from __future__ import annotations

import torch
from torch import nn

from hpclab import comm
from hpclab.parallel.sequence_parallel import (
    gather_from_sequence,
    gathered_linear,
    reduce_scatter_to_sequence,
)

ALGORITHM = "torch"   # torch.distributed's collectives; "ring": messages in comm.tracing()


def split_sizes(n: int, p: int) -> list[int]:
    """Sizes of p nearly equal parts of n (the first n mod p parts get one more)."""
    return [n // p + (1 if i < n % p else 0) for i in range(p)]


def _all_reduce(t: torch.Tensor, ctx, algorithm: str) -> torch.Tensor:
    t = t.contiguous().clone()
    return comm.all_reduce(t, algorithm=algorithm, group=ctx.group,
                           timeout=getattr(ctx, "timeout", None))


def _all_gather_last_dim(t: torch.Tensor, sizes: list[int], ctx, algorithm: str):
    # the collectives gather equal shapes only: pad every slice to the largest, trim after.
    width = max(sizes)
    padded = nn.functional.pad(t, (0, width - t.shape[-1])).contiguous()
    parts = [torch.empty_like(padded) for _ in sizes]
    comm.all_gather(parts, padded, algorithm=algorithm, group=ctx.group,
                    timeout=getattr(ctx, "timeout", None))
    return torch.cat([part[..., :s] for part, s in zip(parts, sizes)], dim=-1)


class _CopyToParallel(torch.autograd.Function):
    """f: identity forward, all-reduce of the gradient backward."""

    @staticmethod
    def forward(ctx, x, dist_ctx, algorithm):
        ctx.dist_ctx, ctx.algorithm = dist_ctx, algorithm
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return _all_reduce(grad, ctx.dist_ctx, ctx.algorithm), None, None


class _ReduceFromParallel(torch.autograd.Function):
    """g: all-reduce forward, identity backward."""

    @staticmethod
    def forward(ctx, x, dist_ctx, algorithm):
        return _all_reduce(x, dist_ctx, algorithm)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


def copy_to_parallel(x: torch.Tensor, ctx, algorithm: str = ALGORITHM) -> torch.Tensor:
    """Megatron's f: x unchanged forward; ∂J/∂x ← Σ_ranks ∂J/∂x backward (all-reduce)."""
    return _CopyToParallel.apply(x, ctx, algorithm)


def reduce_from_parallel(x: torch.Tensor, ctx, algorithm: str = ALGORITHM) -> torch.Tensor:
    """Megatron's g: Σ_ranks x forward (all-reduce); the gradient unchanged backward."""
    return _ReduceFromParallel.apply(x, ctx, algorithm)


class _GatherFromParallel(torch.autograd.Function):
    """all-gather along features forward, keep this rank's slice backward."""

    @staticmethod
    def forward(ctx, x, sizes, dist_ctx, algorithm):
        ctx.sizes, ctx.rank = sizes, dist_ctx.rank
        return _all_gather_last_dim(x, sizes, dist_ctx, algorithm)

    @staticmethod
    def backward(ctx, grad):
        return grad.split(ctx.sizes, dim=-1)[ctx.rank].contiguous(), None, None, None


class _ScatterToParallel(torch.autograd.Function):
    """keep this rank's feature slice forward, all-gather of the gradient backward."""

    @staticmethod
    def forward(ctx, x, sizes, dist_ctx, algorithm):
        ctx.sizes, ctx.dist_ctx, ctx.algorithm = sizes, dist_ctx, algorithm
        return x.split(sizes, dim=-1)[dist_ctx.rank].contiguous()

    @staticmethod
    def backward(ctx, grad):
        return (_all_gather_last_dim(grad, ctx.sizes, ctx.dist_ctx, ctx.algorithm),
                None, None, None)


def mark_shard(param: nn.Parameter, dim: int, sizes: list[int], pieces: int = 1) -> None:
    """Record how `param` is cut: along `dim`, the full tensor is `pieces` equal blocks
    (3 for a fused q, k, v weight), and rank r holds sizes[r] rows of each block."""
    param.tp_shard = (dim, list(sizes), pieces)


def gather_parameters(model: nn.Module, ctx, grads: bool = False,
                      algorithm: str = ALGORITHM) -> dict[str, torch.Tensor]:
    """The single-process model's tensors, {name: full tensor} (the gradients with
    grads=True), put together from every rank's shards (collective: every rank of the
    group calls it). Parameters without `tp_shard` are replicated: this rank's copy."""
    full = {}
    for name, p in model.named_parameters():
        t = p.grad if grads else p.detach()
        if t is None:
            continue
        shard = getattr(p, "tp_shard", None)
        full[name] = t.detach().clone() if shard is None else \
            _gather_shards(t.detach(), *shard, ctx, algorithm)
    return full


def _gather_shards(t, dim, sizes, pieces, ctx, algorithm) -> torch.Tensor:
    local = [pieces * s for s in sizes]
    ranks = _all_gather_last_dim(t.movedim(dim, -1), local, ctx, algorithm).split(local, -1)
    blocks = [torch.cat([r.split(sizes[i], -1)[j] for i, r in enumerate(ranks)], dim=-1)
              for j in range(pieces)]
    return torch.cat(blocks, dim=-1).movedim(-1, dim)


class ColumnParallelLinear(nn.Module):
    """Rank i holds W_i (rows of W) and b_i; returns Y_i, or the whole Y if gather_output.

    sequence_parallel: the input is this rank's slice of the sequence (dim 1 of (B, T, C));
    it is all-gathered along the sequence (backward: reduce-scatter) instead of f.
    regather (with sequence_parallel): keep only the slice for backward and all-gather it
    again there (Megatron's memory saving; sequence_parallel.gathered_linear)."""

    def __init__(self, in_features: int, out_features: int, ctx, bias: bool = True,
                 gather_output: bool = True, dtype=None, device=None,
                 sequence_parallel: bool = False, algorithm: str = ALGORITHM,
                 regather: bool = False):
        super().__init__()
        if regather and not sequence_parallel:
            raise ValueError("regather=True needs sequence_parallel=True (without it the "
                             "input is whole on every rank: there is nothing to gather)")
        self.regather = regather
        if out_features < ctx.world_size:
            raise ValueError(f"out_features ({out_features}) must be >= world_size "
                             f"({ctx.world_size}) to give every rank a column")
        self.ctx, self.gather_output = ctx, gather_output
        self.sequence_parallel, self.algorithm = sequence_parallel, algorithm
        self.sizes = split_sizes(out_features, ctx.world_size)
        local = self.sizes[ctx.rank]
        kw = {"dtype": dtype, "device": device}
        self.weight = nn.Parameter(torch.empty(local, in_features, **kw))
        self.bias = nn.Parameter(torch.zeros(local, **kw)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)   # nn.Linear's default
        mark_shard(self.weight, 0, self.sizes)
        if self.bias is not None:
            mark_shard(self.bias, 0, self.sizes)

    @classmethod
    def from_linear(cls, linear: nn.Linear, ctx, gather_output: bool = True, **kwargs):
        layer = cls(linear.in_features, linear.out_features, ctx,
                    bias=linear.bias is not None, gather_output=gather_output,
                    dtype=linear.weight.dtype, device=linear.weight.device, **kwargs)
        with torch.no_grad():
            layer.weight.copy_(linear.weight.split(layer.sizes, dim=0)[ctx.rank])
            if linear.bias is not None:
                layer.bias.copy_(linear.bias.split(layer.sizes)[ctx.rank])
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.regather:
            y = gathered_linear(x, self.weight, self.bias, self.ctx, self.algorithm)
        else:
            if self.sequence_parallel:
                x = gather_from_sequence(x, self.ctx, self.algorithm)
            else:
                x = copy_to_parallel(x, self.ctx, self.algorithm)
            y = nn.functional.linear(x, self.weight, self.bias)
        if self.gather_output:
            y = _GatherFromParallel.apply(y, self.sizes, self.ctx, self.algorithm)
        return y


class RowParallelLinear(nn.Module):
    """Rank i holds W_i (columns of W); sums the partial products; b is added once.

    sequence_parallel: the sum is reduce-scattered along the sequence (dim 1 of (B, T, C);
    backward: all-gather) instead of g, and every rank adds b to its slice of the
    sequence, so b's gradient is partial: it is marked `sequence_parallel` and summed over
    the ranks by `sequence_parallel.all_reduce_sequence_parallel_grads`."""

    def __init__(self, in_features: int, out_features: int, ctx, bias: bool = True,
                 input_is_parallel: bool = False, dtype=None, device=None,
                 sequence_parallel: bool = False, algorithm: str = ALGORITHM):
        super().__init__()
        if in_features < ctx.world_size:
            raise ValueError(f"in_features ({in_features}) must be >= world_size "
                             f"({ctx.world_size}) to give every rank a row block")
        if sequence_parallel and not input_is_parallel:
            raise ValueError("sequence_parallel=True needs input_is_parallel=True (the "
                             "column-parallel layer before it gathered the sequence)")
        self.ctx, self.input_is_parallel = ctx, input_is_parallel
        self.sequence_parallel, self.algorithm = sequence_parallel, algorithm
        self.sizes = split_sizes(in_features, ctx.world_size)
        kw = {"dtype": dtype, "device": device}
        self.weight = nn.Parameter(torch.empty(out_features, self.sizes[ctx.rank], **kw))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        mark_shard(self.weight, 1, self.sizes)
        # b is replicated: every rank adds it after the all-reduce, and every rank's copy
        # receives the same gradient.
        self.bias = nn.Parameter(torch.zeros(out_features, **kw)) if bias else None
        if self.bias is not None and sequence_parallel:
            self.bias.sequence_parallel = True

    @classmethod
    def from_linear(cls, linear: nn.Linear, ctx, input_is_parallel: bool = False, **kwargs):
        layer = cls(linear.in_features, linear.out_features, ctx,
                    bias=linear.bias is not None, input_is_parallel=input_is_parallel,
                    dtype=linear.weight.dtype, device=linear.weight.device, **kwargs)
        with torch.no_grad():
            layer.weight.copy_(linear.weight.split(layer.sizes, dim=1)[ctx.rank])
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.input_is_parallel:
            x = _ScatterToParallel.apply(x, self.sizes, self.ctx, self.algorithm)
        partial = nn.functional.linear(x, self.weight)
        if self.sequence_parallel:
            y = reduce_scatter_to_sequence(partial, self.ctx, self.algorithm)
        else:
            y = reduce_from_parallel(partial, self.ctx, self.algorithm)
        return y + self.bias if self.bias is not None else y

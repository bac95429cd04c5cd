"""Sequence parallelism (Korthikanti et al. 2022, "Reducing Activation Recomputation in
Large Transformer Models", §4.2.2): the LayerNorm and dropout regions of a
tensor-parallel block split along the sequence.

Tensor parallelism splits the attention heads and the MLP's hidden units over the t ranks
of a group, but between those regions every rank holds the whole activation (B, T, C):
LayerNorm, dropout and the residual add are repeated t times on the same numbers. They
act on each position alone, so each rank can keep its own T/t positions instead:

    TP:     LN(X) ─ f ─ column ─ … ─ row ─ g ─ dropout(+X)       f, g: (identity, all-reduce)
    TP+SP:  LN(X_s) ─ g ─ column ─ … ─ row ─ ḡ ─ dropout(+X_s)   X_s: (B, T/t, C) on rank s

with the two conjugate operators of the paper

    g = gather_from_sequence(x):       forward all-gather along T,    backward reduce-scatter
    ḡ = reduce_scatter_to_sequence(x): forward reduce-scatter along T, backward all-gather

An all-reduce is a reduce-scatter followed by an all-gather, so a ring moves the same
bytes either way, 2(t−1)/t·n per rank per all-reduce, but the activations between the
regions now take 1/t of the memory. Two more operators enter and leave the sequence
region at the ends of the model (`scatter_to_sequence`, `gather_sequence`), and the
parameters inside it (the LayerNorms, the row-parallel biases) see only T/t positions:
their gradients are partial sums, marked `param.sequence_parallel = True` and summed over
the ranks after backward by `all_reduce_sequence_parallel_grads`.

Memory, textbook and tuned. Composed from autograd (`gather_from_sequence` then the
linear layer), the column-parallel layer's gathered input (B, T, C) is what autograd
keeps for ∂J/∂W, so the LayerNorm, dropout and residual tensors are split t ways but
the two linear inputs are not. `gathered_linear` (regather=True in the layers) is
Megatron's way: keep this rank's (B, T/t, C) slice and all-gather it again in backward,
one more all-gather per column-parallel layer for 1/t of its input's memory; then a
block holds exactly sbh/t·(34 + 5as/h) (hpclab.memory's calculator, §4.2.2).

The sequence is dim 1 of (B, T, C) and T must be divisible by t. The collectives are
hpclab.comm's all_gather / reduce_scatter (which cut a flat buffer into rank-order
chunks), so the sequence is moved to the front first, as Megatron keeps its (T, B, C)
layout for the same reason.
"""

from __future__ import annotations

import torch
from torch import nn

from hpclab import comm

SEQ_DIM = 1


def _check(x: torch.Tensor, ctx, what: str) -> None:
    T = x.shape[SEQ_DIM]
    if T % ctx.world_size:
        raise ValueError(f"sequence parallel {what}: the sequence length {T} must be "
                         f"divisible by the tensor-parallel size t={ctx.world_size}; pad "
                         f"the batch or choose a block size that t divides")


def _all_gather_seq(x: torch.Tensor, ctx, algorithm: str) -> torch.Tensor:
    """(B, T/t, C) on every rank → (B, T, C), the ranks' slices in rank order."""
    front = x.movedim(SEQ_DIM, 0).contiguous()
    out = torch.empty((ctx.world_size * front.shape[0], *front.shape[1:]),
                      dtype=x.dtype, device=x.device)
    comm.all_gather(out, front, algorithm=algorithm, group=ctx.group,
                    timeout=getattr(ctx, "timeout", None))
    return out.movedim(0, SEQ_DIM)


def _reduce_scatter_seq(x: torch.Tensor, ctx, algorithm: str) -> torch.Tensor:
    """(B, T, C) partial sums on every rank → rank s: (B, T/t, C), slice s of the sum."""
    _check(x, ctx, "reduce-scatter")
    front = x.movedim(SEQ_DIM, 0).contiguous()
    out = torch.empty((front.shape[0] // ctx.world_size, *front.shape[1:]),
                      dtype=x.dtype, device=x.device)
    comm.reduce_scatter(out, front, algorithm=algorithm, group=ctx.group,
                        timeout=getattr(ctx, "timeout", None))
    return out.movedim(0, SEQ_DIM)


def _my_slice(x: torch.Tensor, ctx) -> torch.Tensor:
    _check(x, ctx, "scatter")
    return x.chunk(ctx.world_size, dim=SEQ_DIM)[ctx.rank].contiguous()


class _GatherFromSequence(torch.autograd.Function):
    """g: all-gather along the sequence forward, reduce-scatter backward."""

    @staticmethod
    def forward(ctx, x, dist_ctx, algorithm):
        ctx.dist_ctx, ctx.algorithm = dist_ctx, algorithm
        return _all_gather_seq(x, dist_ctx, algorithm)

    @staticmethod
    def backward(ctx, grad):
        return _reduce_scatter_seq(grad, ctx.dist_ctx, ctx.algorithm), None, None


class _ReduceScatterToSequence(torch.autograd.Function):
    """ḡ: reduce-scatter along the sequence forward, all-gather backward."""

    @staticmethod
    def forward(ctx, x, dist_ctx, algorithm):
        ctx.dist_ctx, ctx.algorithm = dist_ctx, algorithm
        return _reduce_scatter_seq(x, dist_ctx, algorithm)

    @staticmethod
    def backward(ctx, grad):
        return _all_gather_seq(grad, ctx.dist_ctx, ctx.algorithm), None, None


class _ScatterToSequence(torch.autograd.Function):
    """Enter the region: keep this rank's slice forward, all-gather backward."""

    @staticmethod
    def forward(ctx, x, dist_ctx, algorithm):
        ctx.dist_ctx, ctx.algorithm = dist_ctx, algorithm
        return _my_slice(x, dist_ctx)

    @staticmethod
    def backward(ctx, grad):
        return _all_gather_seq(grad, ctx.dist_ctx, ctx.algorithm), None, None


class _GatherSequence(torch.autograd.Function):
    """Leave the region: all-gather forward, keep this rank's slice backward (what
    follows is replicated: every rank holds the same whole gradient)."""

    @staticmethod
    def forward(ctx, x, dist_ctx, algorithm):
        ctx.dist_ctx = dist_ctx
        return _all_gather_seq(x, dist_ctx, algorithm)

    @staticmethod
    def backward(ctx, grad):
        return _my_slice(grad, ctx.dist_ctx), None, None


class _GatheredLinear(torch.autograd.Function):
    """Y = g(X) Wᵀ + b keeping only X (this rank's slice): backward all-gathers X again
    for ∂J/∂W = ∂J/∂Yᵀ g(X) and reduce-scatters ∂J/∂g(X) = ∂J/∂Y W."""

    @staticmethod
    def forward(ctx, x, weight, bias, dist_ctx, algorithm):
        ctx.dist_ctx, ctx.algorithm, ctx.has_bias = dist_ctx, algorithm, bias is not None
        ctx.save_for_backward(x, weight)
        return nn.functional.linear(_all_gather_seq(x, dist_ctx, algorithm), weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        total = _all_gather_seq(x, ctx.dist_ctx, ctx.algorithm)
        grad_x = _reduce_scatter_seq(grad @ weight, ctx.dist_ctx, ctx.algorithm)
        grad_w = grad.reshape(-1, grad.shape[-1]).t() @ total.reshape(-1, total.shape[-1])
        grad_b = grad.reshape(-1, grad.shape[-1]).sum(0) if ctx.has_bias else None
        return grad_x, grad_w, grad_b, None, None


def gathered_linear(x, weight, bias, ctx, algorithm: str = "torch") -> torch.Tensor:
    """g then a linear layer, keeping only this rank's slice of x for backward."""
    return _GatheredLinear.apply(x, weight, bias, ctx, algorithm)


def gather_from_sequence(x, ctx, algorithm: str = "torch") -> torch.Tensor:
    """g, before a column-parallel linear: (B, T/t, C) → (B, T, C)."""
    return _GatherFromSequence.apply(x, ctx, algorithm)


def reduce_scatter_to_sequence(x, ctx, algorithm: str = "torch") -> torch.Tensor:
    """ḡ, after a row-parallel linear: partial (B, T, C) → summed (B, T/t, C)."""
    return _ReduceScatterToSequence.apply(x, ctx, algorithm)


def scatter_to_sequence(x, ctx, algorithm: str = "torch") -> torch.Tensor:
    """Replicated (B, T, C) → this rank's (B, T/t, C), e.g. after the embeddings."""
    return _ScatterToSequence.apply(x, ctx, algorithm)


def gather_sequence(x, ctx, algorithm: str = "torch") -> torch.Tensor:
    """This rank's (B, T/t, C) → replicated (B, T, C), e.g. before the output head."""
    return _GatherSequence.apply(x, ctx, algorithm)


def mark_sequence_parallel(module: nn.Module) -> nn.Module:
    """Mark every parameter of `module` (a LayerNorm inside the region) as partial."""
    for p in module.parameters():
        p.sequence_parallel = True
    return module


def all_reduce_sequence_parallel_grads(model: nn.Module, ctx, algorithm: str = "torch"):
    """Sum the gradients of the parameters marked `sequence_parallel` over the ranks (one
    all-reduce of them all, flattened): afterwards every rank holds the gradient of the
    whole sequence, as without sequence parallelism. Call it after backward."""
    grads = [p.grad for p in model.parameters()
             if getattr(p, "sequence_parallel", False) and p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    comm.all_reduce(flat, algorithm=algorithm, group=ctx.group,
                    timeout=getattr(ctx, "timeout", None))
    for g, part in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(part.view_as(g))

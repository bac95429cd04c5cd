"""Reduction operators: what "reduce" means when two ranks' vectors meet.

Every algorithm combines an incoming piece into its own piece in place with `combine_`:

    sum, avg:  a ← a + b      (avg divides by p once at the end: avg = (Σ x_i) / p)
    max:       a ← max(a, b)  elementwise

Both are commutative and associative on exact numbers, which is what lets each algorithm
pick its own order. On floats the order changes the last bits, so two algorithms may
differ by rounding, but every rank of one algorithm ends with identical bits, because
each element is reduced once and then copied, or reduced as a + b on one rank and b + a
on its partner (IEEE addition is commutative).
"""

from __future__ import annotations

import torch

OPS = ("sum", "avg", "max")


def check_op(op: str, dtype: torch.dtype) -> None:
    if op not in OPS:
        raise ValueError(f"op must be one of {list(OPS)}, got {op!r}")
    if op == "avg" and not (dtype.is_floating_point or dtype.is_complex):
        raise ValueError(f"op='avg' needs a floating-point tensor (the mean of integers is "
                         f"not an integer), got dtype {dtype}; use op='sum' and divide")


def combine_(mine: torch.Tensor, incoming: torch.Tensor, op: str) -> None:
    """mine ← mine ⊕ incoming, in place."""
    if op == "max":
        torch.maximum(mine, incoming, out=mine)
    else:  # sum and avg both add; avg divides once, in finish_
        mine.add_(incoming)


def finish_(x: torch.Tensor, op: str, world_size: int) -> None:
    """The last touch after the reduction: avg divides the sum by p."""
    if op == "avg":
        x.div_(world_size)

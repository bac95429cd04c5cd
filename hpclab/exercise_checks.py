"""Checks that the exercises' hidden tests use to see *how* a solution works.

Where the gradient is the exercise (B1: ∇J = 1/n Xᵀ(Xθ − y) written out), a submission
that asks autograd for it computes the right numbers and must still lose the points:

    from hpclab.exercise_checks import autograd_used
    with autograd_used() as used:
        g = mse_gradient(X, y, theta)
    assert not used, f"mse_gradient used autograd: {used}"

`used` lists what ran, e.g. ["backward pass"]. Reverse mode in every spelling
(`loss.backward()`, `torch.autograd.grad`, `torch.func.grad`, `torch.autograd.functional`)
goes through the autograd engine's `run_backward`, which is counted; forward mode
(`torch.func.jacfwd`, `torch.autograd.forward_ad`) makes dual tensors, which a
TorchFunctionMode sees.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch.distributed as dist
from torch.autograd.variable import Variable
from torch.overrides import TorchFunctionMode


class _CountingEngine:
    """Stands in for torch's autograd engine and counts the backward passes it runs."""

    def __init__(self, engine):
        self.engine, self.calls = engine, 0

    def run_backward(self, *args, **kwargs):
        self.calls += 1
        return self.engine.run_backward(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.engine, name)


class _DualTensorSpy(TorchFunctionMode):
    """Notes when forward-mode AD makes a dual tensor."""

    def __init__(self):
        super().__init__()
        self.duals = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") == "_make_dual":
            self.duals += 1
        return func(*args, **(kwargs or {}))


@contextmanager
def autograd_used():
    """Yield a list that, on exit, names the automatic differentiation that ran inside."""
    used: list[str] = []
    engine = Variable._execution_engine
    counting = _CountingEngine(engine)
    Variable._execution_engine = counting
    try:
        with _DualTensorSpy() as spy:
            yield used
    finally:
        Variable._execution_engine = engine
        if counting.calls:
            used.append(f"{counting.calls} backward pass(es) (backward, autograd.grad, torch.func.grad)")
        if spy.duals:
            used.append("forward-mode AD (torch.func.jacfwd, forward_ad)")


# -- which collectives ran ---------------------------------------------------------------
# Where the collectives are the exercise (D5: the ZeRO-1 step is a reduce-scatter and an
# all-gather, not an all-reduce), the trace of hpclab.comm's messages says which ran, and
# `torch_collectives_used` catches a detour through torch.distributed, which leaves no
# trace:
#
#     with tracing() as trace, torch_collectives_used() as torch_calls:
#         zero1_step(...)
#     sent_by_collective(trace.messages, rank)   # {"reduce_scatter": 132, "all_gather": 132}
#     assert not torch_calls, torch_calls        # e.g. ["all_reduce"]

# torch.distributed's collectives, each a way around hpclab.comm's traced ones
TORCH_COLLECTIVES = ("all_reduce", "reduce_scatter", "reduce_scatter_tensor", "all_gather",
                     "all_gather_into_tensor", "broadcast", "reduce", "all_to_all",
                     "all_to_all_single", "scatter", "gather")


@contextmanager
def torch_collectives_used():
    """Yield a list that, on exit, names each torch.distributed collective called inside
    (once per call, e.g. ["all_reduce", "all_reduce"]), and run them as usual."""
    used: list[str] = []
    real = {name: getattr(dist, name) for name in TORCH_COLLECTIVES if hasattr(dist, name)}

    def counting(name, fn):
        def call(*args, **kwargs):
            used.append(name)
            return fn(*args, **kwargs)
        return call

    for name, fn in real.items():
        setattr(dist, name, counting(name, fn))
    try:
        yield used
    finally:
        for name, fn in real.items():
            setattr(dist, name, fn)


def sent_by_collective(messages, rank: int) -> dict[str, int]:
    """Bytes that `rank` sent, per collective, in hpclab.comm trace `messages`."""
    out: dict[str, int] = {}
    for m in messages:
        if m.src == rank:
            out[m.collective] = out.get(m.collective, 0) + m.nbytes
    return out

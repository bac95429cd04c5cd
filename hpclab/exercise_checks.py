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

Where a file must be written atomically (D4's checkpoint), `file_operations` logs what a
save does to files and `atomic_write_problems` says what in that log is not atomic (see
the end of this file).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import contextmanager

import torch.distributed as dist
from torch.autograd.variable import Variable
from torch.overrides import TorchFunctionMode

from hpclab.cluster.spawn import run_local


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

# Where a save must be atomic (D4: write a temporary file beside the target, fsync,
# os.replace), the grader watches the save's file operations:
#
#     from hpclab.exercise_checks import atomic_write_problems, file_operations
#     log = file_operations(save_checkpoint, path, model, optimizer, 3)
#     problems = atomic_write_problems(log, path)
#     assert not problems, "; ".join(problems)
#
# Python's audit hooks (PEP 578) report every `open` (path, mode), `os.rename` and
# `os.replace` (src, dst) and shutil copy; a profile hook sees calls of os.fsync and
# os.fdatasync. They observe and replace nothing. An audit hook cannot be removed, so the
# function runs in a forked process (run_local with one rank) and only the log comes back.

_AUDITED = ("open", "os.rename", "shutil.copyfile", "shutil.move")


def _plain(a):
    return os.fsdecode(a) if isinstance(a, (str, bytes, os.PathLike)) else a


def _traced(ctx, fn, args, kwargs):
    log: list[tuple] = []

    def audit(event, hook_args):
        if event in _AUDITED:
            log.append((event, *[_plain(a) for a in hook_args[:2]]))

    def profile(frame, event, arg):
        if event == "c_call" and arg in (os.fsync, os.fdatasync):
            log.append(("fsync",))

    sys.addaudithook(audit)
    sys.setprofile(profile)
    try:
        fn(*args, **kwargs)
    finally:
        sys.setprofile(None)
    return log


def file_operations(fn: Callable, *args, timeout: float = 60.0, **kwargs) -> list[tuple]:
    """The file operations of fn(*args, **kwargs), in order, run in a forked process:
    ("open", path, mode), ("os.rename", src, dst) (also os.replace, Path.replace),
    ("shutil.copyfile", src, dst), ("fsync",). fn's side effects on files stay."""
    [log] = run_local(_traced, 1, fn, args, kwargs, timeout=timeout)
    return log


def atomic_write_problems(log: list[tuple], target: str | os.PathLike) -> list[str]:
    """What in a `file_operations` log keeps the write of `target` from being atomic:
    empty when a temporary file in target's folder was fsynced and renamed onto it."""
    target = os.path.realpath(target)
    problems = []
    opened = [e for e in log if e[0] == "open" and isinstance(e[1], str)
              and os.path.realpath(e[1]) == target and isinstance(e[2], str)
              and set(e[2]) & set("wax+")]
    if opened:
        problems.append(f"{target} itself was opened for writing ({opened[0]}): a crash "
                        "mid-write leaves it truncated; write a temporary file instead")
    renames = [i for i, e in enumerate(log) if e[0] == "os.rename"
               and os.path.realpath(e[2]) == target]
    if not renames:
        problems.append(f"nothing was renamed onto {target}: finish with os.replace(tmp, "
                        "target), the step readers see all at once")
        return problems
    src = log[renames[-1]][1]
    if os.path.dirname(os.path.realpath(src)) != os.path.dirname(target):
        problems.append(f"the temporary file {src} is not in {os.path.dirname(target)}: "
                        "a rename is atomic only within one file system, so keep it beside "
                        "the target")
    if not any(e[0] == "fsync" for e in log[:renames[-1]]):
        problems.append("no os.fsync before os.replace: the rename can reach the disk "
                        "before the data, leaving an empty file after a power loss")
    return problems

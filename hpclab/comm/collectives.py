"""The public collectives: torch.distributed's signatures, the course's algorithms.

    hpclab.comm.all_reduce(x, op="sum", algorithm="ring")        # in place, like dist's
    hpclab.comm.all_reduce(x, algorithm="auto", costs=costs)     # costs = calibrate(group)
    hpclab.comm.broadcast(x, src=0, algorithm="tree")
    hpclab.comm.reduce(x, dst=0, op="sum", algorithm="tree")
    hpclab.comm.all_gather(output, x, algorithm="ring")         # output: p·n elements or
    hpclab.comm.reduce_scatter(output, input, algorithm="ring") #   a list of p tensors

They work in any initialised process group (ipyparallel engines, torchrun, mp.spawn);
`group` is a torch.distributed group (None = default) and `src`/`dst` are ranks in it.
`timeout` (seconds, default 60) bounds every single wait. Ops: "sum", "avg", "max".
`ALGORITHMS` lists which algorithms each collective offers (the one table of names; the
cost model has a formula for each all-reduce); "torch" always delegates to
torch.distributed. algorithm="auto" runs the all-reduce the cost model predicts fastest
for the tensor's size, with the costs measured on the group (`measure.calibrate`). This
file only checks arguments and flattens tensors: each algorithm file works on one flat,
contiguous 1-D tensor in place. `gather_traces` brings every rank's trace to one rank.
"""

from __future__ import annotations

import pickle
from contextlib import contextmanager
from dataclasses import astuple
from datetime import timedelta
from functools import partial

import torch

from hpclab.comm import (
    halving_doubling,
    hierarchical,
    naive,
    parameter_server,
    recursive_doubling,
    ring,
    ring_pipelined,
    torch_backend,
    tree,
)
from hpclab.comm.cost_model import Costs, TwoLevel, best_algorithm
from hpclab.comm.ops import check_op, finish_
from hpclab.comm.p2p import Comm
from hpclab.comm.trace import Message, Trace

_TABLE = {
    "all_reduce": {"naive": naive.all_reduce, "parameter_server": parameter_server.all_reduce,
                   "ring": ring.all_reduce, "ring_pipelined": ring_pipelined.all_reduce,
                   "recursive_doubling": recursive_doubling.all_reduce,
                   "halving_doubling": halving_doubling.all_reduce, "tree": tree.all_reduce,
                   "hierarchical": hierarchical.all_reduce, "torch": torch_backend.all_reduce},
    "broadcast": {"naive": naive.broadcast, "tree": tree.broadcast,
                  "torch": torch_backend.broadcast},
    "reduce": {"naive": naive.reduce, "tree": tree.reduce, "torch": torch_backend.reduce},
    "all_gather": {"naive": naive.all_gather, "parameter_server": parameter_server.all_gather,
                   "ring": ring.all_gather, "ring_pipelined": ring_pipelined.all_gather,
                   "torch": torch_backend.all_gather},
    "reduce_scatter": {"naive": naive.reduce_scatter,
                       "parameter_server": parameter_server.reduce_scatter,
                       "ring": ring.reduce_scatter,
                       "ring_pipelined": ring_pipelined.reduce_scatter,
                       "torch": torch_backend.reduce_scatter},
}
ALGORITHMS: dict[str, tuple[str, ...]] = {name: tuple(t) for name, t in _TABLE.items()}


def all_reduce(tensor: torch.Tensor, op: str = "sum", algorithm: str = "ring", group=None,
               timeout: float | timedelta | None = None, *,
               costs: Costs | None = None, ranks_per_node: int | None = None) -> torch.Tensor:
    """Reduce `tensor` over all ranks and leave the result in it on every rank.

    algorithm="auto" runs cost_model.best_algorithm for the tensor's size with `costs`,
    the group's measured message costs (`costs = hpclab.comm.calibrate(group)`, once, on
    every rank: every rank then picks the same algorithm). algorithm="hierarchical" needs
    the ranks per node: `ranks_per_node`, else the costs' (TwoLevel), else
    LOCAL_WORLD_SIZE from the environment."""
    _check_tensor(tensor, "tensor")
    if algorithm == "auto":
        if costs is None:
            raise ValueError('algorithm="auto" needs the group\'s measured costs: run '
                             "costs = hpclab.comm.calibrate(group) once on every rank and "
                             "pass costs=costs")
        p = Comm.of(group, timeout, trace=None).world_size
        algorithm = best_algorithm(tensor.numel() * tensor.element_size(), p, costs)
    fn = _algorithm("all_reduce", algorithm)
    check_op(op, tensor.dtype)
    comm = Comm.of(group, timeout, collective="all_reduce", algorithm=algorithm)
    if algorithm == "hierarchical":
        if ranks_per_node is None and isinstance(costs, TwoLevel):
            ranks_per_node = costs.ranks_per_node
        fn = partial(fn, ranks_per_node=hierarchical.check_ranks_per_node(
            comm.world_size, ranks_per_node))
    with _flat(tensor) as x:
        fn(comm, x, op)
        finish_(x, op, comm.world_size)
    return tensor


def broadcast(tensor: torch.Tensor, src: int = 0, algorithm: str = "tree", group=None,
              timeout: float | timedelta | None = None) -> torch.Tensor:
    """Copy rank `src`'s tensor into `tensor` on every rank."""
    fn = _algorithm("broadcast", algorithm)
    _check_tensor(tensor, "tensor")
    comm = Comm.of(group, timeout, collective="broadcast", algorithm=algorithm)
    _check_root(src, "src", comm)
    with _flat(tensor) as x:
        fn(comm, x, root=src)
    return tensor


def reduce(tensor: torch.Tensor, dst: int = 0, op: str = "sum", algorithm: str = "tree",
           group=None, timeout: float | timedelta | None = None) -> torch.Tensor:
    """Reduce over all ranks into `tensor` on rank `dst`; other ranks' tensors are kept."""
    fn = _algorithm("reduce", algorithm)
    check_op(op, _check_tensor(tensor, "tensor").dtype)
    comm = Comm.of(group, timeout, collective="reduce", algorithm=algorithm)
    _check_root(dst, "dst", comm)
    if comm.rank != dst:   # the algorithms leave partial sums in non-root tensors
        fn(comm, tensor.reshape(-1).clone(), op, root=dst)
        return tensor
    with _flat(tensor) as x:
        fn(comm, x, op, root=dst)
        finish_(x, op, comm.world_size)
    return tensor


def all_gather(output: torch.Tensor | list[torch.Tensor], tensor: torch.Tensor,
               algorithm: str = "ring", group=None, timeout: float | timedelta | None = None):
    """Every rank's `tensor`, in rank order, into `output` on every rank.

    `output` is a tensor of p·tensor.numel() elements (like dist.all_gather_into_tensor)
    or a list of p tensors shaped like `tensor` (like dist.all_gather)."""
    fn = _algorithm("all_gather", algorithm)
    _check_tensor(tensor, "tensor")
    comm = Comm.of(group, timeout, collective="all_gather", algorithm=algorithm)
    p, m = comm.world_size, tensor.numel()
    if isinstance(output, (list, tuple)):
        _check_list(output, p, tensor, "output")
        x = torch.empty(p * m, dtype=tensor.dtype, device=tensor.device)
        _run_all_gather(fn, comm, x, tensor)
        for r, out in enumerate(output):
            out.copy_(x[r * m:(r + 1) * m].view_as(out))
        return output
    _check_sizes(_check_tensor(output, "output"), p * m, tensor, "output")
    with _flat(output) as x:
        _run_all_gather(fn, comm, x, tensor)
    return output


def reduce_scatter(output: torch.Tensor, input: torch.Tensor | list[torch.Tensor],
                   op: str = "sum", algorithm: str = "ring", group=None,
                   timeout: float | timedelta | None = None) -> torch.Tensor:
    """Rank r's `output` ← reduction over all ranks of block r of `input`.

    `input` is a tensor of p·output.numel() elements (like dist.reduce_scatter_tensor) or a
    list of p tensors shaped like `output` (like dist.reduce_scatter); it is not changed."""
    fn = _algorithm("reduce_scatter", algorithm)
    check_op(op, _check_tensor(output, "output").dtype)
    comm = Comm.of(group, timeout, collective="reduce_scatter", algorithm=algorithm)
    p, m = comm.world_size, output.numel()
    if isinstance(input, (list, tuple)):
        _check_list(input, p, output, "input")
        x = torch.cat([t.reshape(-1) for t in input])
    else:
        _check_sizes(_check_tensor(input, "input"), p * m, output, "input")
        x = input.reshape(-1).clone()
    fn(comm, x, op)
    mine = x[comm.rank * m:(comm.rank + 1) * m]
    finish_(mine, op, p)
    output.copy_(mine.view_as(output))
    return output


def gather_traces(trace: Trace, dst: int = 0, group=None,
                  timeout: float | None = None) -> list[Message] | None:
    """Send every rank's messages to rank `dst`; it gets them all sorted by (call, step,
    t_start), the other ranks get None. Collective: every rank of the group must call it."""
    comm = Comm.of(group, timeout, collective="gather_traces", algorithm="naive", trace=None)
    if comm.rank != dst:
        payload = pickle.dumps([astuple(m) for m in trace.messages])
        data = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
        comm.send(torch.tensor([data.numel()], dtype=torch.int64), dst, step=0, phase="size")
        comm.send(data, dst, step=1, phase="payload")
        return None
    everyone = list(trace.messages)
    for src in range(comm.world_size):
        if src != dst:
            size = torch.zeros(1, dtype=torch.int64)
            comm.recv(size, src, step=0, phase="size")
            data = torch.empty(int(size.item()), dtype=torch.uint8)
            comm.recv(data, src, step=1, phase="payload")
            everyone += [Message(*row) for row in pickle.loads(data.numpy().tobytes())]
    return sorted(everyone, key=lambda m: (m.call, m.step, m.t_start))


# -- plumbing ----------------------------------------------------------------------------
def _algorithm(collective: str, algorithm: str):
    table = _TABLE[collective]
    if algorithm not in table:
        offered_by = [c for c, t in _TABLE.items() if algorithm in t]
        elsewhere = f" (only {', '.join(offered_by)} offers it)" if offered_by else ""
        offered = list(table) + (["auto"] if collective == "all_reduce" else [])
        raise ValueError(f"{collective} has no algorithm {algorithm!r}{elsewhere}; "
                         f"choose one of {offered}")
    return table[algorithm]


def _run_all_gather(fn, comm: Comm, x: torch.Tensor, tensor: torch.Tensor):
    m = tensor.numel()
    x[comm.rank * m:(comm.rank + 1) * m].copy_(tensor.reshape(-1))
    fn(comm, x)


@contextmanager
def _flat(tensor: torch.Tensor):
    """A flat contiguous view of `tensor` (a copy if it is not contiguous, written back)."""
    if tensor.is_contiguous():
        yield tensor.view(-1)
        return
    x = tensor.contiguous().view(-1)
    yield x
    tensor.copy_(x.view(tensor.shape))


def _check_tensor(t, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def _check_root(root: int, name: str, comm: Comm) -> None:
    if not isinstance(root, int) or not 0 <= root < comm.world_size:
        raise ValueError(f"{name} must be a rank in 0..{comm.world_size - 1}, got {root!r}")


def _check_sizes(big: torch.Tensor, numel: int, small: torch.Tensor, name: str) -> None:
    if big.numel() != numel or big.dtype != small.dtype:
        raise ValueError(f"{name} must have p·n = {numel} elements of dtype {small.dtype}, "
                         f"got {big.numel()} of {big.dtype}")


def _check_list(tensors, p: int, like: torch.Tensor, name: str) -> None:
    if len(tensors) != p:
        raise ValueError(f"{name} must be a list of p = {p} tensors, got {len(tensors)}")
    for t in tensors:
        _check_tensor(t, name)
        if t.shape != like.shape or t.dtype != like.dtype:
            raise ValueError(f"every tensor of {name} must have shape {tuple(like.shape)} and "
                             f"dtype {like.dtype}, got {tuple(t.shape)} {t.dtype}")

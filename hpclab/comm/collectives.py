"""The public collectives: torch.distributed's signatures, the course's algorithms.

    hpclab.comm.all_reduce(x, op="sum", algorithm="ring")        # in place, like dist's
    hpclab.comm.broadcast(x, src=0, algorithm="tree")
    hpclab.comm.reduce(x, dst=0, op="sum", algorithm="tree")
    hpclab.comm.all_gather(output, x, algorithm="ring")         # output: p·n elements or
    hpclab.comm.reduce_scatter(output, input, algorithm="ring") #   a list of p tensors

They work in any initialised process group (ipyparallel engines, torchrun, mp.spawn);
`group` is a torch.distributed group (None = default) and `src`/`dst` are ranks in it.
`timeout` (seconds, default 60) bounds every single wait. Ops: "sum", "avg", "max".
`ALGORITHMS` lists which algorithms each collective offers; "torch" always delegates to
torch.distributed. This file only checks arguments and flattens tensors: each algorithm
file works on one flat, contiguous 1-D tensor in place.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import torch

from hpclab.comm import (
    halving_doubling,
    naive,
    parameter_server,
    recursive_doubling,
    ring,
    torch_backend,
    tree,
)
from hpclab.comm.ops import check_op, finish_
from hpclab.comm.p2p import Comm

_TABLE = {
    "all_reduce": {"naive": naive.all_reduce, "parameter_server": parameter_server.all_reduce,
                   "ring": ring.all_reduce, "recursive_doubling": recursive_doubling.all_reduce,
                   "halving_doubling": halving_doubling.all_reduce, "tree": tree.all_reduce,
                   "torch": torch_backend.all_reduce},
    "broadcast": {"naive": naive.broadcast, "tree": tree.broadcast,
                  "torch": torch_backend.broadcast},
    "reduce": {"naive": naive.reduce, "tree": tree.reduce, "torch": torch_backend.reduce},
    "all_gather": {"naive": naive.all_gather, "parameter_server": parameter_server.all_gather,
                   "ring": ring.all_gather, "torch": torch_backend.all_gather},
    "reduce_scatter": {"naive": naive.reduce_scatter,
                       "parameter_server": parameter_server.reduce_scatter,
                       "ring": ring.reduce_scatter, "torch": torch_backend.reduce_scatter},
}
ALGORITHMS: dict[str, tuple[str, ...]] = {name: tuple(t) for name, t in _TABLE.items()}
SEGMENTED = ("ring",)   # the algorithms that take segment_bytes


def all_reduce(tensor: torch.Tensor, op: str = "sum", algorithm: str = "ring", group=None,
               timeout: float | timedelta | None = None, *,
               segment_bytes: int | None = None) -> torch.Tensor:
    """Reduce `tensor` over all ranks and leave the result in it on every rank.

    algorithm="auto" lets the α–β–γ model pick by size, with the group's measured message
    costs (auto.py; the first such call measures them, on every rank)."""
    if algorithm == "auto":
        from hpclab.comm import auto
        algorithm = auto.choose(tensor.numel() * tensor.element_size(), group, timeout)
        if segment_bytes is not None and algorithm not in SEGMENTED:
            segment_bytes = None
    fn = _algorithm("all_reduce", algorithm, segment_bytes)
    check_op(op, _check_tensor(tensor, "tensor").dtype)
    comm = Comm.of(group, timeout, collective="all_reduce", algorithm=algorithm)
    with _flat(tensor) as x:
        fn(comm, x, op, **_extra(segment_bytes))
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
               algorithm: str = "ring", group=None, timeout: float | timedelta | None = None,
               *, segment_bytes: int | None = None):
    """Every rank's `tensor`, in rank order, into `output` on every rank.

    `output` is a tensor of p·tensor.numel() elements (like dist.all_gather_into_tensor)
    or a list of p tensors shaped like `tensor` (like dist.all_gather)."""
    fn = _algorithm("all_gather", algorithm, segment_bytes)
    _check_tensor(tensor, "tensor")
    comm = Comm.of(group, timeout, collective="all_gather", algorithm=algorithm)
    p, m = comm.world_size, tensor.numel()
    if isinstance(output, (list, tuple)):
        _check_list(output, p, tensor, "output")
        x = torch.empty(p * m, dtype=tensor.dtype, device=tensor.device)
        _run_all_gather(fn, comm, x, tensor, segment_bytes)
        for r, out in enumerate(output):
            out.copy_(x[r * m:(r + 1) * m].view_as(out))
        return output
    _check_sizes(_check_tensor(output, "output"), p * m, tensor, "output")
    with _flat(output) as x:
        _run_all_gather(fn, comm, x, tensor, segment_bytes)
    return output


def reduce_scatter(output: torch.Tensor, input: torch.Tensor | list[torch.Tensor],
                   op: str = "sum", algorithm: str = "ring", group=None,
                   timeout: float | timedelta | None = None, *,
                   segment_bytes: int | None = None) -> torch.Tensor:
    """Rank r's `output` ← reduction over all ranks of block r of `input`.

    `input` is a tensor of p·output.numel() elements (like dist.reduce_scatter_tensor) or a
    list of p tensors shaped like `output` (like dist.reduce_scatter); it is not changed."""
    fn = _algorithm("reduce_scatter", algorithm, segment_bytes)
    check_op(op, _check_tensor(output, "output").dtype)
    comm = Comm.of(group, timeout, collective="reduce_scatter", algorithm=algorithm)
    p, m = comm.world_size, output.numel()
    if isinstance(input, (list, tuple)):
        _check_list(input, p, output, "input")
        x = torch.cat([t.reshape(-1) for t in input])
    else:
        _check_sizes(_check_tensor(input, "input"), p * m, output, "input")
        x = input.reshape(-1).clone()
    fn(comm, x, op, **_extra(segment_bytes))
    mine = x[comm.rank * m:(comm.rank + 1) * m]
    finish_(mine, op, p)
    output.copy_(mine.view_as(output))
    return output


# -- plumbing ----------------------------------------------------------------------------
def _algorithm(collective: str, algorithm: str, segment_bytes: int | None = None):
    table = _TABLE[collective]
    if algorithm not in table:
        offered_by = [c for c, t in _TABLE.items() if algorithm in t]
        elsewhere = f" (only {', '.join(offered_by)} offers it)" if offered_by else ""
        offered = list(table) + (["auto"] if collective == "all_reduce" else [])
        raise ValueError(f"{collective} has no algorithm {algorithm!r}{elsewhere}; "
                         f"choose one of {offered}")
    if segment_bytes is not None:
        if algorithm not in SEGMENTED:
            raise ValueError(f"segment_bytes applies to algorithm in {list(SEGMENTED)}, "
                             f"not {algorithm!r}")
        if not isinstance(segment_bytes, int) or segment_bytes < 1:
            raise ValueError(f"segment_bytes must be a positive int, got {segment_bytes!r}")
    return table[algorithm]


def _extra(segment_bytes: int | None) -> dict:
    return {} if segment_bytes is None else {"segment_bytes": segment_bytes}


def _run_all_gather(fn, comm: Comm, x: torch.Tensor, tensor: torch.Tensor, segment_bytes):
    m = tensor.numel()
    x[comm.rank * m:(comm.rank + 1) * m].copy_(tensor.reshape(-1))
    fn(comm, x, **_extra(segment_bytes))


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

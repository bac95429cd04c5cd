"""broadcast, reduce, all_gather and reduce_scatter against their torch.distributed twins.

Real gloo process groups of 1, 2, 3 and 5 ranks (run_local), every algorithm each
collective offers, several roots, dtypes, lengths (0, 1, fewer than p, primes) and the
list and tensor forms. Data are small integers stored in each dtype, so every sum is
exact and the comparison is bit-exact for every dtype.
"""

import pytest
import torch
import torch.distributed as dist

from hpclab import comm
from hpclab.cluster.spawn import run_local

pytestmark = [pytest.mark.unit_c]

DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.int64)
TORCH_OP = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}


def data(n, dtype, rank, salt):
    g = torch.Generator().manual_seed(97 * salt + rank)
    return torch.randint(-20, 20, (n,), generator=g).to(dtype)


def broadcast_cases(ctx):
    bad, p = [], ctx.world_size
    for algorithm in comm.ALGORITHMS["broadcast"]:
        for src in sorted({0, p - 1, p // 2}):
            for dtype in DTYPES:
                for n in (0, 1, p + 2, 101):
                    x = data(n, dtype, ctx.rank, n + src)
                    expected = x.clone()
                    dist.broadcast(expected, src=src)
                    comm.broadcast(x, src=src, algorithm=algorithm)
                    if not torch.equal(x, expected):
                        bad.append(("broadcast", algorithm, src, dtype, n))
        y = torch.full((4, 3), float(ctx.rank)).t()     # non-contiguous
        comm.broadcast(y, src=p - 1, algorithm=algorithm)
        if not torch.equal(y, torch.full((3, 4), float(p - 1))):
            bad.append(("broadcast non-contiguous", algorithm))
    return bad


def reduce_cases(ctx):
    bad, p = [], ctx.world_size
    for algorithm in comm.ALGORITHMS["reduce"]:
        for dst in sorted({0, p - 1}):
            for dtype in DTYPES:
                for op in ("sum", "max"):
                    for n in (0, 1, p + 2, 101):
                        x = data(n, dtype, ctx.rank, n + dst)
                        before, expected = x.clone(), x.clone()
                        dist.reduce(expected, dst=dst, op=TORCH_OP[op])
                        comm.reduce(x, dst=dst, op=op, algorithm=algorithm)
                        want = expected if ctx.rank == dst else before
                        if not torch.equal(x, want):
                            bad.append(("reduce", algorithm, dst, dtype, op, n))
    return bad


def all_gather_cases(ctx):
    bad, p = [], ctx.world_size
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    for algorithm in comm.ALGORITHMS["all_gather"]:
        for dtype in DTYPES:
            for n in (0, 1, 3, 17):
                x = data(n, dtype, ctx.rank, n)
                expected = torch.empty(p * n, dtype=dtype)
                gather(expected, x)
                out = torch.full((p * n,), -1, dtype=dtype)
                comm.all_gather(out, x, algorithm=algorithm)
                outs = [torch.empty(n, dtype=dtype) for _ in range(p)]
                comm.all_gather(outs, x, algorithm=algorithm)
                if not (torch.equal(out, expected) and torch.equal(torch.cat(outs), expected)):
                    bad.append(("all_gather", algorithm, dtype, n))
        m = torch.arange(6.0).view(2, 3) + 10 * ctx.rank   # shaped input, (p·2, 3) output
        out = torch.empty(2 * p, 3)
        comm.all_gather(out, m, algorithm=algorithm)
        if not torch.equal(out, torch.cat([torch.arange(6.0).view(2, 3) + 10 * r
                                           for r in range(p)])):
            bad.append(("all_gather shaped", algorithm))
    return bad


def reduce_scatter_cases(ctx):
    bad, p = [], ctx.world_size
    scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
    for algorithm in comm.ALGORITHMS["reduce_scatter"]:
        for dtype in DTYPES:
            for op in ("sum", "max", "avg"):
                if op == "avg" and not dtype.is_floating_point:
                    continue
                for m in (0, 1, 3, 17):
                    x = data(p * m, dtype, ctx.rank, m)
                    before = x.clone()
                    expected = torch.empty(m, dtype=dtype)
                    scatter(expected, x.clone(), op=TORCH_OP.get(op, dist.ReduceOp.SUM))
                    if op == "avg":
                        expected = expected / p
                    out = torch.empty(m, dtype=dtype)
                    comm.reduce_scatter(out, x, op=op, algorithm=algorithm)
                    out_list = torch.empty(m, dtype=dtype)
                    comm.reduce_scatter(out_list, list(x.chunk(p)) if m else
                                        [torch.empty(0, dtype=dtype)] * p, op=op,
                                        algorithm=algorithm)
                    exact = torch.equal(out, expected) and torch.equal(out_list, expected)
                    if not exact or not torch.equal(x, before):
                        bad.append(("reduce_scatter", algorithm, dtype, op, m))
    return bad


def all_cases(ctx):
    return (broadcast_cases(ctx) + reduce_cases(ctx) + all_gather_cases(ctx)
            + reduce_scatter_cases(ctx))


@pytest.mark.parametrize("p", (1, 2, 3, 5))
def test_collectives_match_torch(p):
    failures = run_local(all_cases, p, timeout=120)
    assert failures == [[]] * p, failures

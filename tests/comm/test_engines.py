"""hpclab.comm on real ipyparallel engines (hpclab.connect): every algorithm of every
collective against torch.distributed on 3 engines (not a power of two), and traces
gathered to rank 0 — the way the notebooks use it."""

import pytest
import torch
import torch.distributed as dist

import hpclab
from hpclab import comm

pytestmark = [pytest.mark.unit_c, pytest.mark.cluster]


def _all_algorithms(ctx):
    bad = []
    for algorithm in comm.ALGORITHMS["all_reduce"]:
        for dtype in (torch.float64, torch.int64):
            for n in (0, 1, 2, 1001):
                x = (torch.arange(n) * (ctx.rank + 1) - 7).to(dtype)
                expected = x.clone()
                dist.all_reduce(expected)
                comm.all_reduce(x, algorithm=algorithm)
                if not torch.equal(x, expected):
                    bad.append((algorithm, dtype, n))
    for algorithm in comm.ALGORITHMS["broadcast"]:
        y = torch.full((5,), float(ctx.rank))
        comm.broadcast(y, src=2, algorithm=algorithm)
        if not torch.equal(y, torch.full((5,), 2.0)):
            bad.append(("broadcast", algorithm))
    for algorithm in comm.ALGORITHMS["all_gather"]:
        out = torch.empty(3 * 2)
        comm.all_gather(out, torch.full((2,), float(ctx.rank)), algorithm=algorithm)
        if not torch.equal(out, torch.tensor([0.0, 0, 1, 1, 2, 2])):
            bad.append(("all_gather", algorithm))
    return bad


def _traced(ctx):
    with comm.tracing() as trace:
        comm.all_reduce(torch.ones(300), algorithm="ring")
    return comm.gather_traces(trace)


@pytest.fixture(scope="module")
def cluster():
    with hpclab.connect(n=3, timeout=120) as c:
        yield c


def test_every_algorithm_on_engines(cluster):
    assert cluster.run(_all_algorithms, timeout=120) == [[], [], []]


def test_traces_from_engines(cluster):
    rank0, *others = cluster.run(_traced, timeout=60)
    assert others == [None, None]
    assert len(rank0) == 3 * 4 and {(m.src, m.dst) for m in rank0} == {(0, 1), (1, 2), (2, 0)}

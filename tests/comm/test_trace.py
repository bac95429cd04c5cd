"""Trace mode: every message a rank sends is recorded with the fields the all-reduce
visualiser draws, and the traces agree with the algorithms' definitions (who sends which
chunk to whom at which step, and how many bytes in all)."""

import dataclasses
import math

import pytest
import torch

from hpclab import comm
from hpclab.cluster.spawn import run_local

pytestmark = [pytest.mark.unit_c]


def _ring_trace(ctx, n):
    x = torch.ones(n)
    comm.all_reduce(x, algorithm="ring")               # untraced: records nothing
    with comm.tracing() as trace:
        comm.all_reduce(x, algorithm="ring")
        comm.broadcast(x, algorithm="naive")
    everyone = comm.gather_traces(trace)
    return trace.messages, everyone, trace.table()


def test_ring_trace_follows_the_ring():
    p, n = 3, 30
    results = run_local(_ring_trace, p, n)
    for r, (mine, everyone, table) in enumerate(results):
        ring = [m for m in mine if m.call == 0]
        assert [(m.phase, m.step) for m in ring] == [
            ("reduce-scatter", 0), ("reduce-scatter", 1), ("all-gather", 2), ("all-gather", 3)]
        assert all(m.src == r and m.dst == (r + 1) % p for m in ring)
        assert [m.chunk for m in ring] == [(r - 1) % p, (r - 2) % p, r, (r - 1) % p]
        assert all(m.nbytes == 4 * n // p and m.t_end >= m.t_start for m in ring)
        assert {(m.collective, m.algorithm) for m in ring} == {("all_reduce", "ring")}
        bcast = [m for m in mine if m.call == 1]
        assert [(m.src, m.dst, m.phase) for m in bcast] == (
            [(0, 1, "broadcast"), (0, 2, "broadcast")] if r == 0 else [])
        assert "reduce-scatter" in table and "start ms" in table
        assert (everyone is None) == (r != 0)
    everyone = results[0][1]
    assert len(everyone) == p * 4 + 2
    # 2(p−1)/p·n elements leave every rank: the ring's bandwidth term
    assert sum(m.nbytes for m in everyone if m.call == 0) == p * 2 * (p - 1) * 4 * n // p
    assert [m.step for m in everyone if m.call == 0] == sorted(
        m.step for m in everyone if m.call == 0)


def _bytes_sent(ctx, n):
    out = {}
    for algorithm in comm.ALGORITHMS["all_reduce"]:
        if algorithm == "torch":
            continue
        with comm.tracing() as trace:
            comm.all_reduce(torch.ones(n, dtype=torch.float64), algorithm=algorithm)
        everyone = comm.gather_traces(trace)
        if everyone is not None:
            out[algorithm] = (sum(m.nbytes for m in everyone), len(everyone),
                              max(m.step for m in everyone) + 1)
    return out


@pytest.mark.parametrize("p", [4, 5])
def test_traffic_matches_the_textbook(p):
    """Total bytes, messages and steps per algorithm, as the lecture counts them."""
    n = 8 * 3 * 5 * 7          # divisible by every block count used below
    b = 8 * n                  # float64
    got = run_local(_bytes_sent, p, n)[0]
    p2 = 4
    extra = 2 * (p - p2) * b   # fold in + fold out for p = 5
    assert got["naive"] == (2 * (p - 1) * b, 2 * (p - 1), 2 * (p - 1))
    assert got["ring"] == (2 * (p - 1) * b, 2 * p * (p - 1), 2 * (p - 1))
    assert got["ring_pipelined"] == got["ring"]     # one segment per chunk at this size
    assert got["parameter_server"] == (2 * (p - 1) * b, 2 * p * (p - 1), 2 * (p - 1))
    assert got["tree"] == (2 * (p - 1) * b, 2 * (p - 1), 2 * int(math.log2(p)))
    assert got["recursive_doubling"][0] == p2 * 2 * b + extra
    assert got["halving_doubling"][0] == 2 * (p2 - 1) * b + extra
    assert got["recursive_doubling"][2] == 2 + (2 if p != p2 else 0)
    assert got["halving_doubling"][2] == 4 + (2 if p != p2 else 0)


def test_message_has_the_documented_fields_in_order():
    names = [f.name for f in dataclasses.fields(comm.Message)]
    assert names[:8] == ["step", "src", "dst", "chunk", "nbytes", "t_start", "t_end", "phase"]

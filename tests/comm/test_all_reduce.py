"""hpclab.comm.all_reduce against torch.distributed.all_reduce, on real process groups.

Each test forks p real processes (hpclab.cluster.spawn.run_local, gloo) and runs a whole
batch of cases in one go, because starting the processes costs more than the cases.

Tolerances: integers and op="max" bit-exact; sums of floats within the classic bound for
adding p numbers in two different orders, |ours − torch| ≤ 2·p·u·Σ|x_i| (u: unit
roundoff of the dtype). Every rank must also end with identical bits.
"""

import pytest
import torch
import torch.distributed as dist
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpclab import comm
from hpclab.cluster.spawn import run_local
from hpclab.comm import ring_pipelined
from hpclab.comm.ops import finish_

pytestmark = [pytest.mark.unit_c]

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
          "int64": torch.int64}
UNIT_ROUNDOFF = {torch.float32: 2.0 ** -24, torch.float64: 2.0 ** -53,
                 torch.bfloat16: 2.0 ** -8}
TORCH_OP = {"sum": dist.ReduceOp.SUM, "avg": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}
SIZES = (1, 2, 3, 5)


def make_input(n, dtype, layout, seed, rank):
    """Rank-dependent data; `layout` makes it non-contiguous. Returns (x, base)."""
    g = torch.Generator().manual_seed(1000 * seed + rank)
    if dtype.is_floating_point:
        data = (torch.randn(2 * n, generator=g, dtype=torch.float64) * 3).to(dtype)
    else:
        data = torch.randint(-10**12, 10**12, (2 * n,), generator=g)
    if layout == "contiguous":
        return data[:n], data
    if layout == "strided":          # every other element of a 1-D buffer
        return data[::2], data
    base = data.view(n, 2)           # "transposed": a (2, n) view of an (n, 2) matrix
    return base.t(), base


def reference(ctx, dtype, op, n, layout, seed):
    """dist.all_reduce's answer and the rounding tolerance for one input."""
    p = ctx.world_size
    x = make_input(n, dtype, layout, seed, ctx.rank)[0]
    expected = x.contiguous().clone()
    dist.all_reduce(expected, op=TORCH_OP[op])
    if op == "avg":
        expected = expected / p
    if not dtype.is_floating_point or op == "max":
        return expected, None
    abs_sum = x.abs().double()
    dist.all_reduce(abs_sum)   # Σ|x_i| bounds the rounding error
    return expected, 2 * p * UNIT_ROUNDOFF[dtype] * abs_sum / (p if op == "avg" else 1)


def check_case(ctx, case, expected, tol, bits):
    """Run one all-reduce case; return a failure description or None."""
    algorithm, dtype_name, op, n, layout, segment_bytes, seed = case
    x, base = make_input(n, DTYPES[dtype_name], layout, seed, ctx.rank)
    untouched = base.clone()
    if segment_bytes:
        out = pipelined(x, op, segment_bytes)
    else:
        out = comm.all_reduce(x, op=op, algorithm=algorithm)
    if out is not x:
        return f"{case}: did not return its input tensor"
    if layout == "strided" and not torch.equal(base[1::2], untouched[1::2]):
        return f"{case}: wrote outside the strided view"
    if tol is None:
        ok = torch.equal(x, expected)
    else:
        ok = bool(((x.double() - expected.double()).abs() <= tol).all())
    if not ok:
        worst = (x.double() - expected.double()).abs().max().item() if n else 0
        return f"{case}: differs from dist.all_reduce on rank {ctx.rank} (max |diff| {worst})"
    flat = x.contiguous().view(-1)
    bits.append(flat.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[flat.element_size()])
                .long() if n else flat.long())
    return None


def pipelined(x, op, segment_bytes):
    """all_reduce(x, algorithm="ring_pipelined") with segments of `segment_bytes`."""
    flat = x.contiguous().view(-1)
    c = comm.Comm.of(collective="all_reduce", algorithm="ring_pipelined")
    ring_pipelined.all_reduce(c, flat, op, segment_bytes)
    finish_(flat, op, c.world_size)
    if not x.is_contiguous():   # contiguous() made a copy: write it back
        x.copy_(flat.view(x.shape))
    return x


def run_cases(ctx, cases):
    """Check every case; cases sharing an input share one reference computation."""
    by_input = {}
    for case in cases:
        by_input.setdefault(case[1:5] + case[6:], []).append(case)
    failures, bits = [], []
    for (dtype_name, op, n, layout, seed), group in by_input.items():
        expected, tol = reference(ctx, DTYPES[dtype_name], op, n, layout, seed)
        failures += [f for f in (check_case(ctx, c, expected, tol, bits) for c in group) if f]
    # Every rank must hold identical bits: max over ranks of (bits, −bits) gives (max, −min).
    mine = torch.cat(bits + [torch.zeros(1, dtype=torch.int64)])
    hi_and_minus_lo = torch.cat([mine, -mine])
    dist.all_reduce(hi_and_minus_lo, op=dist.ReduceOp.MAX)
    hi, minus_lo = hi_and_minus_lo.chunk(2)
    if not torch.equal(hi, -minus_lo):
        failures.append("ranks ended with different bits")
    return failures


def grid(p):
    lengths = sorted({0, 1, p + 1, 97})
    cases = []
    for algorithm in comm.ALGORITHMS["all_reduce"]:
        for dtype in DTYPES:
            for op in ("sum", "avg", "max"):
                if op == "avg" and dtype == "int64":
                    continue
                for n in lengths:
                    cases.append((algorithm, dtype, op, n, "contiguous", None, n))
        for n in (max(p - 1, 1), 1009):   # fewer elements than ranks; a prime
            cases.append((algorithm, "float32", "sum", n, "contiguous", None, n))
            cases.append((algorithm, "int64", "max", n, "contiguous", None, n))
        cases.append((algorithm, "float32", "sum", (1 << 18) + 3, "contiguous", None, 7))
        if p == 2 and algorithm not in ("parameter_server", "torch"):
            # over 4 MiB: more 1 MiB pieces than receive slots, so the slots are reused
            cases.append((algorithm, "float32", "max", (4 << 18) + 1, "contiguous", None, 8))
        cases.append((algorithm, "float64", "avg", 13, "strided", None, 3))
        cases.append((algorithm, "int64", "sum", 11, "transposed", None, 4))
    for segment_bytes in (1, 4, 12, 1000):     # the pipelined ring with many segments
        for n in (0, 1, 5, 33, 1001):
            cases.append(("ring_pipelined", "float32", "sum", n, "contiguous", segment_bytes,
                          n))
            cases.append(("ring_pipelined", "int64", "max", n, "strided", segment_bytes, n))
    return cases


@pytest.mark.parametrize("p", SIZES)
def test_every_algorithm_matches_torch(p):
    failures = run_local(run_cases, p, grid(p), timeout=120)
    assert failures == [[]] * p, failures


case_strategy = st.tuples(
    st.sampled_from(comm.ALGORITHMS["all_reduce"]),
    st.sampled_from(["float32", "float64", "bfloat16", "int64"]),
    st.sampled_from(["sum", "max", "avg"]),
    st.one_of(st.integers(0, 12), st.integers(13, 5000)),
    st.sampled_from(["contiguous", "strided", "transposed"]),
    st.sampled_from([None, None, 1, 8, 24, 256]),
    st.integers(0, 10**6),
).filter(lambda c: not (c[2] == "avg" and c[1] == "int64"))


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=st.sampled_from(SIZES), cases=st.lists(case_strategy, min_size=10, max_size=40))
def test_random_cases_match_torch(p, cases):
    cases = [c if c[0] == "ring_pipelined" else (*c[:5], None, c[6]) for c in cases]
    failures = run_local(run_cases, p, cases, timeout=120)
    assert failures == [[]] * p, failures


def _repeatable(ctx):
    x = torch.arange(10.0) * (ctx.rank + 1)
    for _ in range(3):  # consecutive calls must not mix up each other's messages
        comm.all_reduce(x, algorithm="ring")
        pipelined(x, "sum", segment_bytes=8)
    return x.tolist()


def test_consecutive_calls_stay_in_order():
    p = 3
    total = sum(r + 1 for r in range(p))
    expected = [v * total * p ** 5 for v in range(10)]
    assert run_local(_repeatable, p) == [expected] * p

"""hpclab.comm.measure on real process groups: every rank gets the same figures (the model
and "auto" depend on it), for every size asked, in seconds; idle ranks take part (rank 2
of 3 has no partner to exchange with, ranks >= 2 send no one-way message)."""

import math

import pytest

from hpclab.cluster.spawn import run_local
from hpclab.comm import measure

pytestmark = [pytest.mark.unit_c]

SIZES = [4, 4096, 1 << 20]


def measure_on_rank(ctx):
    return (measure.ping_pong(SIZES, repeats=2, timeout=30),
            measure.one_way(SIZES, repeats=2, timeout=30),
            measure.exchange(SIZES, repeats=2, timeout=30),
            measure.one_way(SIZES, repeats=2, timeout=30, reduce=True),
            measure.exchange(SIZES, repeats=2, timeout=30, reduce=True))


@pytest.mark.parametrize("world_size", [2, 3])
def test_every_rank_gets_the_same_figures(world_size):
    out = run_local(measure_on_rank, world_size, timeout=120)
    assert all(r == out[0] for r in out), "ranks disagree on the measured times"
    for table in out[0]:
        assert sorted(table) == SIZES
        assert all(0 < t < 5 and math.isfinite(t) for t in table.values()), table


def test_reduction_times_cover_every_size():
    times = measure.reduction_times([4096, 1 << 20], repeats=2)
    assert sorted(times) == [4096, 1 << 20] and all(t > 0 for t in times.values())

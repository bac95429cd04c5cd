"""`hpclab bench dashboard`'s statistics: the step period, the bootstrap interval and the
1 % verdict, against hand computations and numpy's percentiles."""

from __future__ import annotations

import numpy as np
import pytest

from hpclab.bench.dashboard import BAR, median_ci, step_period, verdict
from hpclab.metrics import StepRecord

pytestmark = [pytest.mark.unit_d]


def _records(rank, period, steps=20, start=100.0):
    return [StepRecord(step=k, loss=1.0, rank=rank, world_size=2, time=start + k * period)
            for k in range(steps)]


def test_step_period_is_the_slowest_ranks_and_skips_the_start():
    fast, slow = _records(0, 0.010), _records(1, 0.012)
    slow[0].time -= 5.0                      # a slow start-up (step 0) is left out
    got = step_period(fast + slow[::-1])     # any order
    assert got == pytest.approx(0.012, rel=1e-9)


def test_median_ci_brackets_the_median_like_numpys_percentiles():
    d = np.random.default_rng(1).normal(0.02, 0.01, size=40)
    m, lo, hi = median_ci(d)
    assert m == pytest.approx(np.median(d))
    assert lo < m < hi
    # the interval of the median: about ±1.96·1.2533·σ/√n for normal data
    assert hi - lo == pytest.approx(2 * 1.96 * 1.2533 * 0.01 / np.sqrt(40), rel=0.5)


@pytest.mark.parametrize("own, slowdown, want", [
    ((0.004, 0.003, 0.005), (0.0, -0.05, 0.05), "holds"),      # the bound is within
    ((0.02, 0.015, 0.025), (0.0, -0.004, 0.008), "holds"),     # the A/B is within
    ((0.02, 0.015, 0.025), (0.03, 0.02, 0.04), "missed"),      # measured above the bar
    ((0.012, 0.011, 0.013), (0.0, -0.05, 0.05), "unresolved"),
])
def test_verdict(own, slowdown, want):
    assert BAR == 0.01 and verdict(own, slowdown) == want

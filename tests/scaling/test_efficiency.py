"""Scaling metrics against their definitions and scipy's curve fit."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import curve_fit

from hpclab.parallel import efficiency as eff

pytestmark = [pytest.mark.unit_d]


def test_speedup_and_efficiency_from_times():
    t1, tp, p = 8.0, [8.0, 4.4, 2.5], [1, 2, 4]
    np.testing.assert_allclose(eff.speedup(t1, tp), [1.0, 8 / 4.4, 3.2])
    np.testing.assert_allclose(eff.efficiency(t1, tp, p), [1.0, 8 / 4.4 / 2, 0.8])
    assert eff.throughput(1024, 0.5) == 2048.0


@settings(max_examples=40, deadline=None)
@given(f=st.floats(0.05, 0.999), noise=st.floats(0.0, 0.02), seed=st.integers(0, 10_000))
def test_fit_amdahl_agrees_with_scipy_curve_fit(f, noise, seed):
    p = np.array([1, 2, 4, 8, 16, 32], dtype=float)
    s = eff.amdahl(p, f) * (1 + noise * np.random.default_rng(seed).standard_normal(p.size))
    ours = eff.fit_amdahl(p, s)
    (ref,), _ = curve_fit(lambda p, f: 1 / ((1 - f) + f / p), p, s, p0=[0.5], bounds=(0, 1))
    assert ours == pytest.approx(ref, abs=1e-5)
    if noise == 0.0:
        assert ours == pytest.approx(f, abs=1e-6)


def test_amdahl_ceiling_and_gustafson():
    assert eff.amdahl([1e12], 0.95)[0] == pytest.approx(20.0, rel=1e-6)
    np.testing.assert_allclose(eff.gustafson([1, 4], 0.9), [1.0, 3.7])


@pytest.mark.parametrize("call, match", [
    (lambda: eff.amdahl([2], 1.5), "parallel fraction"),
    (lambda: eff.speedup(1.0, [0.0]), "times must be > 0"),
    (lambda: eff.efficiency(1.0, [1.0], [0]), "worker counts"),
    (lambda: eff.throughput(1, 0), "seconds"),
    (lambda: eff.fit_amdahl([1, 2], [1.0]), "same length"),
])
def test_bad_input_names_the_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()

"""The α–β–γ model: formulas against the lecture's closed forms, bandwidth definitions,
the choice of algorithm, and the fits recovering known parameters."""

import math

import numpy as np
import pytest

from hpclab.comm import cost_model
from hpclab.comm.cost_model import Params, predict

pytestmark = [pytest.mark.unit_c]

C = Params(alpha=20e-6, beta=0.5e-9, gamma=0.25e-9)
N = 16 << 20


@pytest.mark.parametrize("p", [2, 3, 4, 5, 8, 16])
def test_closed_forms(p):
    a, b, g = C.alpha, C.beta, C.gamma
    assert predict("ring", N, p, C) == pytest.approx(
        2 * (p - 1) * a + 2 * (p - 1) / p * N * b + (p - 1) / p * N * g)
    assert predict("naive", N, p, C) == pytest.approx(2 * (p - 1) * (a + N * b) + (p - 1) * N * g)
    p2 = 2 ** int(math.log2(p))
    fold = 0 if p == p2 else 2 * (a + N * b) + N * g
    assert predict("recursive_doubling", N, p, C) == pytest.approx(
        math.log2(p2) * (a + N * b + N * g) + fold)
    assert predict("halving_doubling", N, p, C) == pytest.approx(
        2 * math.log2(p2) * a + 2 * (p2 - 1) / p2 * N * b + (p2 - 1) / p2 * N * g + fold)


@pytest.mark.parametrize("p,d", [(3, 1), (7, 2), (15, 3)])
def test_tree_on_full_trees(p, d):
    hop = C.alpha + N * C.beta
    assert predict("tree", N, p, C) == pytest.approx(2 * d * (hop + N * C.gamma) + 2 * d * hop)


def test_tree_on_two_ranks_is_one_hop_each_way():
    hop = C.alpha + N * C.beta
    assert predict("tree", N, 2, C) == pytest.approx(2 * hop + N * C.gamma)


def test_one_rank_costs_nothing_and_bad_names_fail():
    assert all(predict(a, N, 1, C) == 0 for a in cost_model.FORMULAS)
    with pytest.raises(ValueError, match="no cost formula for algorithm 'bogus'"):
        predict("bogus", N, 4, C)


def test_duplex_beta_slows_the_exchanging_algorithms_only():
    slow = Params(C.alpha, C.beta, C.gamma, beta_duplex=2 * C.beta, alpha_duplex=2 * C.alpha)
    for algorithm in ("ring", "parameter_server", "recursive_doubling", "halving_doubling"):
        assert predict(algorithm, N, 4, slow) > predict(algorithm, N, 4, C)
    for algorithm in ("naive", "tree"):
        assert predict(algorithm, N, 4, slow) == predict(algorithm, N, 4, C)


def test_bus_bandwidth():
    assert cost_model.alg_bandwidth(1e6, 1e-3) == pytest.approx(1e9)
    assert cost_model.bus_bandwidth(1e6, 1e-3, 4) == pytest.approx(1e9 * 2 * 3 / 4)
    assert cost_model.bus_bandwidth(1e6, 1e-3, 1) == 0


def test_ring_time_saturates_while_naive_grows_linearly():
    ring = [predict("ring", N, p, C) for p in (2, 4, 8, 16, 64)]
    naive = [predict("naive", N, p, C) for p in (2, 4, 8, 16, 64)]
    assert ring[-1] < 1.5 * ring[1]       # 2(p−1)/p → 2: from p = 4 to 64, under 1.5×
    assert naive[-1] == pytest.approx(63 * naive[0])


def test_best_algorithm_small_latency_bound_large_bandwidth_bound():
    assert cost_model.best_algorithm(8, 8, C) == "recursive_doubling"
    assert cost_model.best_algorithm(N, 8, C) == "halving_doubling"
    assert cost_model.best_algorithm(N, 6, C) == "ring"       # not a power of two: no fold
    assert cost_model.best_algorithm(N, 8, C, algorithms=("naive", "tree")) == "tree"


def test_fits_recover_known_parameters():
    sizes = np.array([4, 64, 4096, 1 << 16, 1 << 20, 1 << 24], float)
    alpha, beta = cost_model.fit_alpha_beta(sizes, C.alpha + sizes * C.beta)
    assert alpha == pytest.approx(C.alpha, rel=1e-9) and beta == pytest.approx(C.beta, rel=1e-9)
    assert cost_model.fit_gamma(sizes, sizes * C.gamma) == pytest.approx(C.gamma, rel=1e-12)
    fitted = cost_model.fit(dict(zip(sizes, C.alpha + sizes * C.beta)),
                       dict(zip(sizes, sizes * C.gamma)),
                       dict(zip(sizes, C.alpha + sizes * 3 * C.beta)))
    assert fitted.alpha == pytest.approx(C.alpha) and "GB/s" in str(fitted)
    assert fitted.beta_duplex == pytest.approx(3 * C.beta)
    assert fitted.alpha_duplex == pytest.approx(C.alpha)
    assert cost_model.fit(dict(zip(sizes, C.alpha + sizes * C.beta)),
                     dict(zip(sizes, sizes * C.gamma))).beta2 == pytest.approx(C.beta)
    with pytest.raises(ValueError, match="at least two message sizes"):
        cost_model.fit_alpha_beta([8, 8], [1e-6, 1e-6])


def test_link_bandwidth_text_survives_an_unmeasurable_beta():
    """β is clamped at 0 when no measured size was bandwidth-bound (tiny sizes on a busy
    machine): the text says so instead of dividing by zero."""
    assert cost_model.link_bandwidth(0.5e-9) == "2.00 GB/s"
    assert "too small to measure" in cost_model.link_bandwidth(0.0)
    assert "too small to measure" in str(cost_model.Params(alpha=1e-5, beta=0.0, gamma=0.0,
                                                      beta_duplex=0.0))

"""2-D test functions: analytic gradients equal autograd, the minima are minima."""

import numpy as np
import pytest
import torch

from hpclab.problems import FUNCTIONS, QUADRATIC, SADDLE, quadratic, trajectory

pytestmark = [pytest.mark.unit_b]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_analytic_gradient_equals_autograd(name):
    fn = FUNCTIONS[name]
    g = torch.Generator().manual_seed(0)
    lo = torch.tensor([fn.xlim[0], fn.ylim[0]], dtype=torch.float64)
    hi = torch.tensor([fn.xlim[1], fn.ylim[1]], dtype=torch.float64)
    for _ in range(20):
        p = (lo + (hi - lo) * torch.rand(2, generator=g, dtype=torch.float64))
        p.requires_grad_(True)
        (auto,) = torch.autograd.grad(fn.loss(p), p)
        gx, gy = fn.grad(p[0].detach(), p[1].detach())
        torch.testing.assert_close(torch.stack([gx, gy]), auto, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_minima_are_stationary_with_the_stated_value(name):
    fn = FUNCTIONS[name]
    for x, y in fn.minima:
        assert fn(x, y) == pytest.approx(fn.f_min, abs=1e-12)
        assert np.allclose(fn.grad(x, y), 0.0, atol=1e-12)
        # every grid value is at least the minimum
        assert fn.grid(101)[2].min() >= fn.f_min - 1e-9


def test_saddle_origin_is_stationary_but_not_a_minimum():
    assert np.allclose(SADDLE.grad(0.0, 0.0), 0.0)
    assert SADDLE(0.0, 0.5) < SADDLE(0.0, 0.0) < SADDLE(0.5, 0.0)


def test_grid_works_on_numpy_for_contours():
    X, Y, Z = QUADRATIC.grid(50)
    assert X.shape == Y.shape == Z.shape == (50, 50)
    assert isinstance(Z, np.ndarray)


def test_gd_trajectory_on_a_quadratic_matches_the_closed_form():
    # GD on ½(a x² + b y²): x_t = (1 − η a)^t x₀, y_t = (1 − η b)^t y₀.
    fn, lr, steps = quadratic(1.0, 10.0), 0.05, 40
    path = trajectory(fn, torch.optim.SGD, steps=steps, lr=lr)
    t = np.arange(steps + 1)
    expected = np.stack([(1 - lr * 1.0) ** t * fn.start[0],
                         (1 - lr * 10.0) ** t * fn.start[1]], axis=1)
    np.testing.assert_allclose(path, expected, rtol=1e-12, atol=1e-14)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="a and b must be > 0"):
        quadratic(-1.0, 1.0)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        trajectory(QUADRATIC, torch.optim.SGD, steps=-1, lr=0.1)
    with pytest.raises(ValueError, match="n must be >= 2"):
        QUADRATIC.grid(1)

"""Linear regression by hand: gradient vs autograd, gradient descent vs least squares."""

import numpy as np
import pytest
import torch

from hpclab.problems import (
    add_bias_column,
    gradient_descent,
    least_squares,
    make_linear_regression,
    minibatch_sgd,
    mse_gradient,
    mse_loss,
)

pytestmark = [pytest.mark.unit_b]


@pytest.fixture
def data():
    return make_linear_regression(n_samples=80, n_features=3, noise=5.0, seed=1)


def test_bias_column_and_true_parameters(data):
    assert np.all(data.X[:, 0] == 1.0)
    assert data.X.shape == (80, 4) and data.theta_true.shape == (4,)
    # with little noise the least-squares fit recovers the generating parameters
    clean = make_linear_regression(n_samples=200, n_features=2, noise=0.0, seed=3)
    np.testing.assert_allclose(least_squares(clean.X, clean.y), clean.theta_true, atol=1e-8)


def test_hand_written_gradient_equals_autograd(data):
    theta = np.random.default_rng(0).normal(size=4)
    t = torch.tensor(theta, requires_grad=True)
    X, y = torch.tensor(data.X), torch.tensor(data.y)
    J = ((X @ t - y) ** 2).sum() / (2 * len(y))
    J.backward()
    assert mse_loss(theta, data.X, data.y) == pytest.approx(J.item(), rel=1e-12)
    np.testing.assert_allclose(mse_gradient(theta, data.X, data.y), t.grad.numpy(),
                               rtol=1e-12)


def test_gradient_descent_converges_to_least_squares(data):
    theta, hist = gradient_descent(data.X, data.y, lr=0.5, steps=500)
    np.testing.assert_allclose(theta, least_squares(data.X, data.y), rtol=1e-8, atol=1e-8)
    assert len(hist.losses) == 501 and np.all(np.diff(hist.losses) <= 1e-12)


def test_learning_rate_above_two_over_lambda_max_diverges(data):
    # GD on a quadratic converges iff η < 2/λ_max of the Hessian XᵀX/n.
    lam_max = np.linalg.eigvalsh(data.X.T @ data.X / len(data.y)).max()
    _, ok = gradient_descent(data.X, data.y, lr=1.9 / lam_max, steps=300)
    _, bad = gradient_descent(data.X, data.y, lr=2.1 / lam_max, steps=300)
    assert ok.losses[-1] < ok.losses[0]
    assert bad.losses[-1] > bad.losses[0]


def test_full_batch_minibatch_equals_gd_and_small_batches_are_noisy(data):
    gd, _ = gradient_descent(data.X, data.y, lr=0.1, steps=50)
    mb, _ = minibatch_sgd(data.X, data.y, lr=0.1, steps=50, batch_size=len(data.y))
    np.testing.assert_array_equal(gd, mb)
    _, h1 = minibatch_sgd(data.X, data.y, lr=0.05, steps=300, batch_size=1, seed=0)
    _, h40 = minibatch_sgd(data.X, data.y, lr=0.05, steps=300, batch_size=40, seed=0)
    # the loss of SGD wanders more than that of larger batches once near the minimum
    assert np.std(h1.losses[200:]) > np.std(h40.losses[200:])


def test_bad_arguments_are_named(data):
    with pytest.raises(ValueError, match="lr must be >= 0, got -0.1"):
        gradient_descent(data.X, data.y, lr=-0.1, steps=1)
    with pytest.raises(ValueError, match="batch_size must be in"):
        minibatch_sgd(data.X, data.y, lr=0.1, steps=1, batch_size=0)
    with pytest.raises(ValueError, match="X must be 2-D"):
        add_bias_column(np.zeros(3))

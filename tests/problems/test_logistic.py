"""Logistic classification by hand: gradient vs autograd, solution vs scikit-learn."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from hpclab.problems.logistic import (
    accuracy,
    fit_logistic,
    logistic_gradient,
    logistic_loss,
    make_logistic_data,
    sigmoid,
)

pytestmark = [pytest.mark.unit_b]


@pytest.fixture
def data():
    return make_logistic_data(n_samples=150, seed=2)


@pytest.mark.parametrize("l2", [0.0, 0.1])
def test_gradient_equals_autograd(data, l2):
    w = np.random.default_rng(0).normal(size=3)
    t = torch.tensor(w, requires_grad=True)
    X, y = torch.tensor(data.X), torch.tensor(data.y)
    J = torch.nn.functional.binary_cross_entropy_with_logits(X @ t, y) \
        + 0.5 * l2 * (t[1:] ** 2).sum()
    J.backward()
    assert logistic_loss(w, data.X, data.y, l2) == pytest.approx(J.item(), rel=1e-12)
    np.testing.assert_allclose(logistic_gradient(w, data.X, data.y, l2), t.grad.numpy(),
                               rtol=1e-10, atol=1e-12)


def test_gradient_descent_reaches_sklearns_solution(data):
    l2, n = 0.05, len(data.y)
    w, losses = fit_logistic(data.X, data.y, lr=1.0, steps=3000, l2=l2)
    ref = LogisticRegression(C=1 / (n * l2), tol=1e-10, max_iter=10_000).fit(data.X[:, 1:],
                                                                             data.y)
    np.testing.assert_allclose(w, np.concatenate([ref.intercept_, ref.coef_[0]]),
                               rtol=1e-4, atol=1e-5)
    assert losses[-1] < losses[0]
    assert accuracy(w, data.X, data.y) == pytest.approx(ref.score(data.X[:, 1:], data.y))


def test_sigmoid_is_stable():
    z = np.array([-1000.0, 0.0, 1000.0])
    np.testing.assert_allclose(sigmoid(z), [0.0, 0.5, 1.0])
    assert np.all(np.isfinite(sigmoid(z)))


def test_bad_arguments_are_named(data):
    with pytest.raises(ValueError, match="l2 must be >= 0, got -1"):
        fit_logistic(data.X, data.y, l2=-1)

"""Linear regression by full-batch gradient descent: the course's first training loop.

Data from `sklearn.datasets.make_regression`, with a column of ones added so the bias is
just another weight θ₀. The loss and its gradient are written out by hand:

    J(θ) = 1/(2n) ‖Xθ − y‖²          ∇J(θ) = 1/n Xᵀ(Xθ − y)
    θ ← θ − η ∇J(θ)                  (gradient descent, learning rate η)

and the answer is checked against the closed form (least squares, `np.linalg.lstsq`).

    data = make_linear_regression(n_samples=100, n_features=1, noise=10.0)
    theta, hist = gradient_descent(data.X, data.y, lr=0.5, steps=200)
    theta_ls = least_squares(data.X, data.y)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.datasets import make_regression


@dataclass
class RegressionData:
    X: np.ndarray            # (n, d + 1): first column all ones (the bias feature)
    y: np.ndarray            # (n,)
    theta_true: np.ndarray   # (d + 1,): [bias, coefficients] used to generate y


def add_bias_column(X: np.ndarray) -> np.ndarray:
    """[1, x₁, ..., x_d] per row, so θ₀ is the intercept."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    return np.hstack([np.ones((X.shape[0], 1)), X])


def make_linear_regression(n_samples: int = 100, n_features: int = 1, noise: float = 10.0,
                           bias: float = 5.0, seed: int = 0) -> RegressionData:
    """make_regression with a known intercept `bias`; X gets the bias column."""
    if n_samples < 1 or n_features < 1:
        raise ValueError(f"need n_samples >= 1 and n_features >= 1, "
                         f"got {n_samples} and {n_features}")
    X, y, coef = make_regression(n_samples=n_samples, n_features=n_features, noise=noise,
                                 bias=bias, coef=True, random_state=seed)
    return RegressionData(X=add_bias_column(X), y=y.astype(np.float64),
                          theta_true=np.concatenate([[bias], np.atleast_1d(coef)]))


def mse_loss(theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """J(θ) = 1/(2n) ‖Xθ − y‖² (the ½ makes the gradient tidy)."""
    r = X @ theta - y
    return float(r @ r / (2 * len(y)))


def mse_gradient(theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """∇J(θ) = 1/n Xᵀ(Xθ − y)."""
    return X.T @ (X @ theta - y) / len(y)


def least_squares(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The closed-form minimiser θ* = argmin ‖Xθ − y‖² (via lstsq, stable for any X)."""
    return np.linalg.lstsq(X, y, rcond=None)[0]


@dataclass
class GDHistory:
    losses: list = field(default_factory=list)    # J(θ_t) for t = 0..steps
    thetas: list = field(default_factory=list)    # θ_t for t = 0..steps


def gradient_descent(X: np.ndarray, y: np.ndarray, lr: float, steps: int,
                     theta0: np.ndarray | None = None) -> tuple[np.ndarray, GDHistory]:
    """Full-batch gradient descent θ ← θ − η ∇J(θ), starting from θ₀ (default zeros)."""
    return minibatch_sgd(X, y, lr=lr, steps=steps, batch_size=None, theta0=theta0)


def minibatch_sgd(X: np.ndarray, y: np.ndarray, lr: float, steps: int,
                  batch_size: int | None = 32, theta0: np.ndarray | None = None,
                  seed: int = 0) -> tuple[np.ndarray, GDHistory]:
    """θ ← θ − η ∇J_B(θ) with a fresh random minibatch B of `batch_size` rows each step.

    batch_size=None (or n) is full-batch gradient descent; batch_size=1 is plain SGD.
    The history records the *full* loss J(θ_t), so the noise of small batches shows.
    """
    if lr < 0:
        raise ValueError(f"lr must be >= 0, got {lr}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    n = len(y)
    if batch_size is not None and not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [1, n={n}] or None, got {batch_size}")
    rng = np.random.default_rng(seed)
    theta = np.zeros(X.shape[1]) if theta0 is None else np.array(theta0, dtype=np.float64)
    hist = GDHistory([mse_loss(theta, X, y)], [theta.copy()])
    for _ in range(steps):
        if batch_size is None or batch_size == n:
            g = mse_gradient(theta, X, y)
        else:
            idx = rng.choice(n, size=batch_size, replace=False)
            g = mse_gradient(theta, X[idx], y[idx])
        theta = theta - lr * g
        hist.losses.append(mse_loss(theta, X, y))
        hist.thetas.append(theta.copy())
    return theta, hist

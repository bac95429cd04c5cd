"""Logistic classification (two classes) by gradient descent, written by hand.

With a bias column in X, labels y ∈ {0, 1} and p = σ(Xw):

    J(w) = −1/n Σ [yᵢ log pᵢ + (1 − yᵢ) log(1 − pᵢ)] + λ/2 ‖w₁..d‖²
    ∇J(w) = 1/n Xᵀ(p − y) + λ [0, w₁..d]          (the bias w₀ is not penalised)

    data = make_logistic_data(n_samples=200)
    w, losses = fit_logistic(data.X, data.y, lr=0.5, steps=500, l2=1e-2)
    accuracy(w, data.X, data.y)

sklearn's LogisticRegression(C=1/(nλ)) minimises the same function (the tests check it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.datasets import make_classification

from hpclab.problems.regression import add_bias_column


@dataclass
class ClassificationData:
    X: np.ndarray     # (n, d + 1) with the bias column first
    y: np.ndarray     # (n,) of 0.0 / 1.0


def make_logistic_data(n_samples: int = 200, class_sep: float = 1.0,
                       seed: int = 0) -> ClassificationData:
    """Two overlapping 2-D clouds, so the decision boundary is a line one can draw."""
    X, y = make_classification(n_samples=n_samples, n_features=2, n_informative=2,
                               n_redundant=0, n_clusters_per_class=1, class_sep=class_sep,
                               random_state=seed)
    return ClassificationData(X=add_bias_column(X), y=y.astype(np.float64))


def sigmoid(z: np.ndarray) -> np.ndarray:
    # Written with exp(−|z|) so large |z| neither overflows nor loses the small side.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def predict_proba(w: np.ndarray, X: np.ndarray) -> np.ndarray:
    """P(y = 1 | x) = σ(xᵀw)."""
    return sigmoid(X @ w)


def logistic_loss(w: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float = 0.0) -> float:
    z = X @ w
    # log(1 + e^z) − y z is the cross-entropy written in the logit, stable for any z.
    nll = np.mean(np.logaddexp(0.0, z) - y * z)
    return float(nll + 0.5 * l2 * np.sum(w[1:] ** 2))


def logistic_gradient(w: np.ndarray, X: np.ndarray, y: np.ndarray,
                      l2: float = 0.0) -> np.ndarray:
    g = X.T @ (predict_proba(w, X) - y) / len(y)
    g[1:] += l2 * w[1:]
    return g


def fit_logistic(X: np.ndarray, y: np.ndarray, lr: float = 0.5, steps: int = 500,
                 l2: float = 0.0) -> tuple[np.ndarray, list]:
    """Full-batch gradient descent from w = 0; returns (w, [J(w_t) for t = 0..steps])."""
    if lr < 0:
        raise ValueError(f"lr must be >= 0, got {lr}")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    w = np.zeros(X.shape[1])
    losses = [logistic_loss(w, X, y, l2)]
    for _ in range(steps):
        w = w - lr * logistic_gradient(w, X, y, l2)
        losses.append(logistic_loss(w, X, y, l2))
    return w, losses


def accuracy(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """Fraction classified right with the threshold p ≥ ½ (i.e. xᵀw ≥ 0)."""
    return float(np.mean((X @ w >= 0) == (y == 1)))

"""A two-layer network with forward and backward propagation written by hand.

For inputs X (n, d), integer labels c (n,) and one-hot Y:

    forward                          backward (chain rule, right to left)
    Z₁ = X W₁ + b₁                   dZ₂ = (softmax(Z₂) − Y) / n
    A₁ = g(Z₁)     (g = ReLU/tanh)   dW₂ = A₁ᵀ dZ₂ + λ W₂      db₂ = Σᵢ dZ₂
    Z₂ = A₁ W₂ + b₂   (logits)       dA₁ = dZ₂ W₂ᵀ
    J  = CE(Z₂, c) + λ/2 (‖W₁‖² + ‖W₂‖²)
                                     dZ₁ = dA₁ ⊙ g'(Z₁)
                                     dW₁ = Xᵀ dZ₁ + λ W₁        db₁ = Σᵢ dZ₁

    params = init_two_layer(64, 32, 10, seed=0)
    loss, cache = forward(params, X, y)
    grads = backward(params, cache)        # same keys as params; compare with autograd

The tests check `backward` against `torch.autograd` in float64 to 1e-10.
"""

from __future__ import annotations

import math

import torch

from hpclab.problems.losses import cross_entropy, softmax

ACTIVATIONS = ("relu", "tanh")


def init_two_layer(n_in: int, n_hidden: int, n_out: int, seed: int = 0,
                   dtype=torch.float64) -> dict:
    """W ~ U(−1/√fan_in, 1/√fan_in) as nn.Linear does; biases zero."""
    for name, v in (("n_in", n_in), ("n_hidden", n_hidden), ("n_out", n_out)):
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    g = torch.Generator().manual_seed(seed)

    def uniform(fan_in, shape):
        bound = 1 / math.sqrt(fan_in)
        return (torch.rand(shape, generator=g, dtype=dtype) * 2 - 1) * bound

    return {"W1": uniform(n_in, (n_in, n_hidden)), "b1": torch.zeros(n_hidden, dtype=dtype),
            "W2": uniform(n_hidden, (n_hidden, n_out)), "b2": torch.zeros(n_out, dtype=dtype)}


def _g(z, activation):
    return torch.relu(z) if activation == "relu" else torch.tanh(z)


def _g_prime(z, a, activation):
    return (z > 0).to(z.dtype) if activation == "relu" else 1 - a**2


def forward(params: dict, X: torch.Tensor, y: torch.Tensor, l2: float = 0.0,
            activation: str = "relu") -> tuple[torch.Tensor, dict]:
    """Loss J and the cache of intermediate values that backward needs."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    Z1 = X @ params["W1"] + params["b1"]
    A1 = _g(Z1, activation)
    Z2 = A1 @ params["W2"] + params["b2"]
    loss = cross_entropy(Z2, y)
    if l2:
        loss = loss + 0.5 * l2 * ((params["W1"] ** 2).sum() + (params["W2"] ** 2).sum())
    cache = {"X": X, "y": y, "Z1": Z1, "A1": A1, "Z2": Z2, "l2": l2,
             "activation": activation}
    return loss, cache


def backward(params: dict, cache: dict) -> dict:
    """dJ/dθ for every parameter, from the cache of `forward` (no autograd)."""
    X, y, Z1, A1, Z2 = (cache[k] for k in ("X", "y", "Z1", "A1", "Z2"))
    n = X.shape[0]
    Y = torch.nn.functional.one_hot(y.long(), Z2.shape[1]).to(Z2.dtype)
    dZ2 = (softmax(Z2) - Y) / n
    dW2 = A1.T @ dZ2 + cache["l2"] * params["W2"]
    db2 = dZ2.sum(0)
    dA1 = dZ2 @ params["W2"].T
    dZ1 = dA1 * _g_prime(Z1, A1, cache["activation"])
    dW1 = X.T @ dZ1 + cache["l2"] * params["W1"]
    db1 = dZ1.sum(0)
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def predict(params: dict, X: torch.Tensor, activation: str = "relu") -> torch.Tensor:
    """Predicted class per row: argmax of the logits."""
    Z2 = _g(X @ params["W1"] + params["b1"], activation) @ params["W2"] + params["b2"]
    return Z2.argmax(dim=1)


def train_two_layer(params: dict, X: torch.Tensor, y: torch.Tensor, lr: float = 0.5,
                    steps: int = 200, l2: float = 0.0, activation: str = "relu") -> list:
    """Full-batch gradient descent with the hand-written gradients; returns the losses.

    Updates `params` in place (θ ← θ − η ∂J/∂θ for each tensor).
    """
    if lr < 0:
        raise ValueError(f"lr must be >= 0, got {lr}")
    losses = []
    for _ in range(steps):
        loss, cache = forward(params, X, y, l2, activation)
        grads = backward(params, cache)
        for k in params:
            params[k] -= lr * grads[k]
        losses.append(float(loss))
    return losses

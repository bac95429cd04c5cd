"""Gradient descent, the first algorithm of Unit B: θ ← θ − η ∇J(θ).

"Full batch" is about what the caller puts in `p.grad` (the gradient of the loss over the
whole training set); the update itself is the plainest one there is:

    opt = hpclab.optim.GD(model.parameters(), lr=0.1)
    loss_fn(model(X_all), y_all).backward(); opt.step(); opt.zero_grad()

torch.optim has no GD class; it equals `torch.optim.SGD(params, lr)` with every option
off, and the tests check exactly that.
"""

from __future__ import annotations

import torch

from .base import Optimizer, check_lr, grouped


def gd_step(θ, g, *, lr):
    """θ ← θ − η g  (g = ∇J(θ) over the full batch), in place."""
    θ.add_(g, alpha=-lr)


class GD(Optimizer):
    """Full-batch gradient descent with learning rate η (`lr`)."""

    def __init__(self, params, lr=1e-3, *, foreach=None):
        check_lr(lr)
        super().__init__(params, {"lr": lr, "foreach": foreach, "maximize": False})

    def _step_group(self, group, params, foreach):
        lr = float(group["lr"])
        if foreach:
            for θs, gs in grouped([params, [p.grad for p in params]]):
                torch._foreach_add_(θs, gs, alpha=-lr)
        else:
            for p in params:
                gd_step(p, p.grad, lr=lr)

"""AdaMax (Kingma & Ba, 2015, section 7): Adam with the infinity norm in place of √v.

A drop-in for `torch.optim.Adamax` (note the default lr=2e-3):

    opt = hpclab.optim.Adamax(model.parameters(), lr=2e-3, betas=(0.9, 0.999))
"""

from __future__ import annotations

import torch

from .base import Optimizer, advance, check_betas, check_lr, check_non_negative, grouped


def adamax_step(θ, g, m, u, t, *, lr, beta1, beta2, eps, weight_decay=0.0, maximize=False):
    r"""One AdaMax step at step number t on the tensor θ, in place.

        g ← −g                          if maximize
        g ← g + λ θ                     weight decay λ
        m ← β₁ m + (1 − β₁) g           first moment, as in Adam
        u ← max(β₂ u, |g| + ε)          exponentially weighted infinity norm ("exp_inf")
        θ ← θ − η / (1 − β₁ᵗ) · m / u    (u needs no bias correction: a max does not
                                          shrink towards its zero start)
    """
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g.add(θ, alpha=weight_decay)
    m.lerp_(g, 1 - beta1)
    torch.maximum(u.mul_(beta2), g.abs().add_(eps), out=u)
    θ.addcdiv_(m, u, value=-lr / (1 - beta1 ** t))


def adamax_foreach(θs, gs, ms, us, ts, *, lr, beta1, beta2, eps, weight_decay=0.0,
                   maximize=False):
    """`adamax_step` on lists of tensors of one device and dtype."""
    if maximize:
        gs = torch._foreach_neg(gs)
    if weight_decay != 0:
        gs = torch._foreach_add(gs, θs, alpha=weight_decay)
    torch._foreach_lerp_(ms, gs, 1 - beta1)
    torch._foreach_mul_(us, beta2)
    abs_gs = torch._foreach_abs(gs)
    torch._foreach_add_(abs_gs, eps)
    torch._foreach_maximum_(us, abs_gs)
    torch._foreach_addcdiv_(θs, ms, us, [-lr / (1 - beta1 ** t) for t in ts])


class Adamax(Optimizer):
    """AdaMax: Adam's first moment over an infinity-norm scale u."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 foreach=None, *, maximize=False):
        check_lr(lr)
        check_non_negative(eps, "epsilon value")
        check_betas(betas)
        check_non_negative(weight_decay, "weight_decay value")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "foreach": foreach, "maximize": maximize}
        super().__init__(params, defaults)

    def _state(self, p):
        return self._lazy_state(p, "exp_avg", "exp_inf")

    def _step_group(self, group, params, foreach):
        states = [self._state(p) for p in params]
        beta1, beta2 = group["betas"]
        hyper = {"lr": float(group["lr"]), "beta1": beta1, "beta2": beta2, "eps": group["eps"],
                 "weight_decay": group["weight_decay"], "maximize": group["maximize"]}
        lists = [params, [p.grad for p in params], [s["exp_avg"] for s in states],
                 [s["exp_inf"] for s in states], [s["step"] for s in states]]
        if foreach:
            for θs, gs, ms, us, steps in grouped(lists):
                adamax_foreach(θs, gs, ms, us, advance(steps, foreach=True), **hyper)
        else:
            for θ, g, m, u, step in zip(*lists):
                step += 1
                adamax_step(θ, g, m, u, step.item(), **hyper)

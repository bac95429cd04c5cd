"""LAMB (You et al., 2019, "Large Batch Optimization for Deep Learning", Algorithm 2).

Adam's direction, rescaled per layer (per parameter tensor) by a trust ratio, so that
every layer moves by about η times its own size — what lets BERT train with 32k batches:

    opt = hpclab.optim.LAMB(model.parameters(), lr=1e-3, weight_decay=0.01)

Choices, written down because implementations differ:
- bias correction on (m̂, v̂ as in the paper's final version, Algorithm 2); the older
  paper v3 and `torch_optimizer.Lamb` (default debias=False) leave it out:
  `bias_correction=False` gives that variant.
- φ(‖θ‖) = min(‖θ‖, γᵤ) with γᵤ = `clamp_value` = 10, as in `torch_optimizer.Lamb`
  (the paper allows any φ with bounds γₗ ≤ φ ≤ γᵤ; γₗ = 0 here).
- trust ratio 1 when ‖θ‖ = 0 or ‖u‖ = 0: a freshly zero-initialised layer (a bias) still
  moves, with Adam's step, instead of staying at 0 forever.
torch.optim has no LAMB; the tests check this file against torch_optimizer.Lamb and
against a NumPy transcription of Algorithm 2.
"""

from __future__ import annotations

import torch

from .base import Optimizer, advance, check_betas, check_lr, check_non_negative, grouped


def lamb_step(θ, g, m, v, t, *, lr, beta1, beta2, eps, weight_decay=0.0, clamp_value=10.0,
              bias_correction=True, maximize=False):
    r"""One LAMB step at step number t on one layer θ (a parameter tensor), in place.

        g  ← −g                            if maximize
        m  ← β₁ m + (1 − β₁) g
        v  ← β₂ v + (1 − β₂) g²
        m̂  = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)      (m̂ = m, v̂ = v without bias correction)
        u  = m̂ / (√v̂ + ε) + λ θ                     Adam's direction plus weight decay λ
        r  = φ(‖θ‖) / ‖u‖,  φ(z) = min(z, γᵤ)        trust ratio (1 if ‖θ‖ = 0 or ‖u‖ = 0)
        θ  ← θ − η r u
    """
    if maximize:
        g = -g
    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    c1, c2 = (1 - beta1 ** t, 1 - beta2 ** t) if bias_correction else (1.0, 1.0)
    u = (m / c1).div_((v / c2).sqrt_().add_(eps))
    if weight_decay != 0:
        u.add_(θ, alpha=weight_decay)
    θ_norm = θ.norm().clamp(max=clamp_value)
    u_norm = u.norm()
    # torch.where instead of `if`: no device-to-host sync on a GPU.
    r = torch.where((θ_norm > 0) & (u_norm > 0), θ_norm / u_norm, 1.0)
    θ.addcmul_(u, r, value=-lr)


def lamb_foreach(θs, gs, ms, vs, ts, *, lr, beta1, beta2, eps, weight_decay=0.0,
                 clamp_value=10.0, bias_correction=True, maximize=False):
    """`lamb_step` on lists of tensors of one device and dtype (one norm per tensor)."""
    if maximize:
        gs = torch._foreach_neg(gs)
    torch._foreach_lerp_(ms, gs, 1 - beta1)
    torch._foreach_mul_(vs, beta2)
    torch._foreach_addcmul_(vs, gs, gs, 1 - beta2)
    if bias_correction:
        us = torch._foreach_div(ms, [1 - beta1 ** t for t in ts])
        denoms = torch._foreach_div(vs, [1 - beta2 ** t for t in ts])
        torch._foreach_sqrt_(denoms)
    else:
        us = torch._foreach_mul(ms, 1.0)
        denoms = torch._foreach_sqrt(vs)
    torch._foreach_add_(denoms, eps)
    torch._foreach_div_(us, denoms)
    if weight_decay != 0:
        torch._foreach_add_(us, θs, alpha=weight_decay)
    θ_norms = torch._foreach_norm(θs)
    torch._foreach_clamp_max_(θ_norms, clamp_value)
    u_norms = torch._foreach_norm(us)
    rs = [torch.where((a > 0) & (b > 0), a / b, 1.0) for a, b in zip(θ_norms, u_norms)]
    torch._foreach_mul_(us, rs)
    torch._foreach_add_(θs, us, alpha=-lr)


class LAMB(Optimizer):
    """LAMB: Adam's update scaled per layer by the trust ratio φ(‖θ‖) / ‖u‖."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0,
                 clamp_value=10.0, bias_correction=True, *, foreach=None, maximize=False):
        check_lr(lr)
        check_non_negative(eps, "epsilon value")
        check_betas(betas)
        check_non_negative(weight_decay, "weight_decay value")
        if not clamp_value > 0:
            raise ValueError(f"Invalid clamp_value: {clamp_value} (must be > 0)")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "clamp_value": clamp_value, "bias_correction": bias_correction,
                    "foreach": foreach, "maximize": maximize}
        super().__init__(params, defaults)

    def _state(self, p):
        return self._lazy_state(p, "exp_avg", "exp_avg_sq")

    def _step_group(self, group, params, foreach):
        states = [self._state(p) for p in params]
        beta1, beta2 = group["betas"]
        hyper = {"lr": float(group["lr"]), "beta1": beta1, "beta2": beta2, "eps": group["eps"],
                 "weight_decay": group["weight_decay"], "clamp_value": group["clamp_value"],
                 "bias_correction": group["bias_correction"], "maximize": group["maximize"]}
        lists = [params, [p.grad for p in params], [s["exp_avg"] for s in states],
                 [s["exp_avg_sq"] for s in states], [s["step"] for s in states]]
        if foreach:
            for θs, gs, ms, vs, steps in grouped(lists):
                lamb_foreach(θs, gs, ms, vs, advance(steps, foreach=True), **hyper)
        else:
            for θ, g, m, v, step in zip(*lists):
                step += 1
                lamb_step(θ, g, m, v, step.item(), **hyper)

"""Adam (Kingma & Ba, 2015) with bias correction, AMSGrad and optional decoupled decay.

A drop-in for `torch.optim.Adam` (same arguments, defaults, error messages, state keys):

    opt = hpclab.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0, amsgrad=False)

`adam_step` is the formula for one tensor, `adam_foreach` the same for a list of tensors
with `torch._foreach_*` kernels; the class only keeps m, v (and v_max) per parameter.
AdamW (adamw.py) is this class with decoupled weight decay switched on.
"""

from __future__ import annotations

import torch

from .base import Optimizer, advance, check_betas, check_lr, check_non_negative, grouped


def adam_step(θ, g, m, v, t, *, lr, beta1, beta2, eps, weight_decay=0.0, decoupled=False,
              v_max=None, maximize=False):
    r"""One Adam step at step number t (1, 2, ...) on the tensor θ, in place.

        g  ← −g                         if maximize
        θ  ← θ − η λ θ                  if decoupled (AdamW), else  g ← g + λ θ
        m  ← β₁ m + (1 − β₁) g          first moment (a moving average of g)
        v  ← β₂ v + (1 − β₂) g²         second moment (a moving average of g²)
        m̂  = m / (1 − β₁ᵗ)             bias correction: m and v start at 0
        v̂  = v / (1 − β₂ᵗ)
        v̂  ← max(v̂_max, v̂)             AMSGrad only (v_max is the running maximum of v)
        θ  ← θ − η m̂ / (√v̂ + ε)

    Computed as θ ← θ − (η / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε), the order
    torch.optim uses, so that the two agree to the last bit.
    """
    if maximize:
        g = -g
    if weight_decay != 0:
        if decoupled:
            θ.mul_(1 - lr * weight_decay)
        else:
            g = g.add(θ, alpha=weight_decay)
    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    bias_correction1 = 1 - beta1 ** t
    bias_correction2_sqrt = (1 - beta2 ** t) ** 0.5
    if v_max is not None:
        torch.maximum(v_max, v, out=v_max)
        v = v_max
    denom = (v.sqrt() / bias_correction2_sqrt).add_(eps)
    θ.addcdiv_(m, denom, value=-lr / bias_correction1)


def adam_foreach(θs, gs, ms, vs, ts, *, lr, beta1, beta2, eps, weight_decay=0.0,
                 decoupled=False, v_maxs=None, maximize=False):
    """`adam_step` on lists of tensors of one device and dtype; `ts` are the step numbers."""
    if maximize:
        gs = torch._foreach_neg(gs)
    if weight_decay != 0:
        if decoupled:
            torch._foreach_mul_(θs, 1 - lr * weight_decay)
        else:
            gs = torch._foreach_add(gs, θs, alpha=weight_decay)
    torch._foreach_lerp_(ms, gs, 1 - beta1)
    torch._foreach_mul_(vs, beta2)
    torch._foreach_addcmul_(vs, gs, gs, 1 - beta2)
    step_sizes = [-lr / (1 - beta1 ** t) for t in ts]
    bias_corrections2_sqrt = [(1 - beta2 ** t) ** 0.5 for t in ts]
    if v_maxs is not None:
        torch._foreach_maximum_(v_maxs, vs)
        vs = v_maxs
    denoms = torch._foreach_sqrt(vs)
    torch._foreach_div_(denoms, bias_corrections2_sqrt)
    torch._foreach_add_(denoms, eps)
    torch._foreach_addcdiv_(θs, ms, denoms, step_sizes)


class Adam(Optimizer):
    """Adam: per-coordinate step η m̂ / (√v̂ + ε) with bias-corrected moments."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False,
                 decoupled_weight_decay=False):
        check_lr(lr)
        check_non_negative(eps, "epsilon value")
        check_betas(betas)
        check_non_negative(weight_decay, "weight_decay value")
        betas = tuple(float(b) for b in betas)
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad, "maximize": maximize, "foreach": foreach,
                    "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)

    def _state(self, p, amsgrad):
        return self._lazy_state(p, "exp_avg", "exp_avg_sq",
                                *(["max_exp_avg_sq"] if amsgrad else []))

    def _step_group(self, group, params, foreach):
        amsgrad = group["amsgrad"]
        states = [self._state(p, amsgrad) for p in params]
        beta1, beta2 = group["betas"]
        hyper = {"lr": float(group["lr"]), "beta1": beta1, "beta2": beta2, "eps": group["eps"],
                 "weight_decay": group["weight_decay"], "maximize": group["maximize"],
                 "decoupled": group["decoupled_weight_decay"]}
        lists = [params, [p.grad for p in params], [s["exp_avg"] for s in states],
                 [s["exp_avg_sq"] for s in states], [s["step"] for s in states],
                 [s["max_exp_avg_sq"] if amsgrad else None for s in states]]
        if foreach:
            for θs, gs, ms, vs, steps, v_maxs in grouped(lists):
                ts = advance(steps, foreach=True)
                adam_foreach(θs, gs, ms, vs, ts, v_maxs=v_maxs if amsgrad else None,
                             **hyper)
        else:
            for θ, g, m, v, step, v_max in zip(*lists):
                step += 1
                adam_step(θ, g, m, v, step.item(), v_max=v_max, **hyper)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("amsgrad", False)
            group.setdefault("decoupled_weight_decay", False)

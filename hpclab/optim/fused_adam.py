"""Adam/AdamW fused by torch.compile: the whole update of a tensor in one kernel.

The loop and foreach versions (adam.py) run one kernel per operation — lerp, mul,
addcmul, sqrt, div, add, addcdiv — each reading and writing whole tensors, so a step
moves several times the 28 bytes per parameter that Adam needs (read θ, g, m, v; write
θ, m, v). Fusing the operations into one kernel per tensor moves each byte once; that is
what torch's `fused=True` does by hand in C++/CUDA, and what torch.compile (Inductor)
generates here from the same formula:

    opt = hpclab.optim.fused_adam.FusedAdam(model.parameters(), lr=1e-3)   # or FusedAdamW
    loss.backward(); opt.step()          # the first step compiles (tens of seconds on CPU)

The math is adam.adam_step's; all numbers (η, β, ε, λ, the bias corrections) enter as a
small tensor, so schedules, the growing step t and other hyperparameters reuse one
kernel. Needs a C++ compiler on CPU (Inductor); no AMSGrad.
"""

from __future__ import annotations

import torch

from .base import Optimizer, advance, check_betas, check_lr, check_non_negative, grouped


def _fused_adam_tensor(θ, g, m, v, h):
    """adam.adam_step on one tensor, every number taken from the tensor h (see below).

    h = (σ, λ_coupled, 1 − ηλ_decoupled, 1 − β₁, β₂, 1 − β₂, ε, η / (1 − β₁ᵗ), √(1 − β₂ᵗ)),
    σ = −1 for maximize, else 1, all computed in float64 before the cast to θ's dtype
    (1 − β₂ computed in float32 would be off by 1e-5). Only tensors, no Python numbers,
    reach the compiler, so one compiled kernel serves every hyperparameter, step and
    learning rate (a Python float would be baked into the kernel and force a
    recompilation whenever it changes).
    """
    sign, wd, decay, one_minus_beta1, beta2, one_minus_beta2, eps, step_size, \
        bias_correction2_sqrt = h.unbind()
    g = sign * g + wd * θ                              # g ← ±g + λθ  (Adam's L2 term)
    θ.mul_(decay)                                      # θ ← (1 − ηλ) θ  (AdamW)
    m.lerp_(g, one_minus_beta1)                        # m ← β₁ m + (1 − β₁) g
    v.mul_(beta2).add_(one_minus_beta2 * g * g)        # v ← β₂ v + (1 − β₂) g²
    θ.sub_(step_size * m / (v.sqrt() / bias_correction2_sqrt + eps))


_COMPILED = None


def compiled_step():
    """The compiled per-tensor update, built on first use (importing Inductor is slow).

    dynamic=True: one kernel for every tensor shape, instead of one per shape.
    """
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = torch.compile(_fused_adam_tensor, fullgraph=True, dynamic=True)
    return _COMPILED


class FusedAdam(Optimizer):
    """Adam (or AdamW with `decoupled_weight_decay=True`) with a torch.compile'd step."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, *,
                 maximize=False, decoupled_weight_decay=False):
        check_lr(lr)
        check_non_negative(eps, "epsilon value")
        check_betas(betas)
        check_non_negative(weight_decay, "weight_decay value")
        defaults = {"lr": lr, "betas": tuple(float(b) for b in betas), "eps": eps,
                    "weight_decay": weight_decay, "maximize": maximize, "foreach": None,
                    "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)

    def _state(self, p):
        return self._lazy_state(p, "exp_avg", "exp_avg_sq")

    def _step_group(self, group, params, foreach):
        states = [self._state(p) for p in params]
        beta1, beta2 = group["betas"]
        lists = [params, [p.grad for p in params], [s["exp_avg"] for s in states],
                 [s["exp_avg_sq"] for s in states], [s["step"] for s in states]]
        lr, wd, decoupled = float(group["lr"]), group["weight_decay"], \
            group["decoupled_weight_decay"]
        sign = -1.0 if group["maximize"] else 1.0
        kernel = compiled_step()
        for θs, gs, ms, vs, steps in grouped(lists):
            ts = advance(steps, foreach=True)
            h = torch.tensor([(sign, 0.0 if decoupled else wd, 1 - lr * wd if decoupled else 1.0,
                               1 - beta1, beta2, 1 - beta2, group["eps"],
                               lr / (1 - beta1 ** t),
                               (1 - beta2 ** t) ** 0.5) for t in ts],
                             dtype=θs[0].dtype, device=θs[0].device)
            for θ, g, m, v, h_i in zip(θs, gs, ms, vs, h):
                kernel(θ, g, m, v, h_i)


class FusedAdamW(FusedAdam):
    """AdamW (decoupled weight decay, default 0.01) with a torch.compile'd step."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, *,
                 maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, maximize=maximize,
                         decoupled_weight_decay=True)

"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

A drop-in for `torch.optim.SGD` (same arguments, defaults and error messages):

    opt = hpclab.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)

`sgd_step` is the formula for one tensor; `sgd_foreach` does the same for a list of
tensors with `torch._foreach_*` kernels; the `SGD` class only keeps the momentum buffers.
"""

from __future__ import annotations

import torch

from .base import Optimizer, check_lr, check_non_negative, grouped


def sgd_step(θ, g, buf, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
             nesterov=False, maximize=False):
    r"""One SGD step on the tensor θ, in place; returns the momentum buffer b.

        g ← −g                       if maximize
        g ← g + λ θ                  (weight decay λ, "L2 in the gradient")
        b ← g                        at the first step, else
        b ← μ b + (1 − τ) g          (momentum μ, dampening τ)
        g ← g + μ b  (Nesterov)  or  g ← b  (classical momentum)
        θ ← θ − η g

    With μ = 0 this is plain SGD, θ ← θ − η g, and `buf` stays None.
    """
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g.add(θ, alpha=weight_decay)
    if momentum != 0:
        if buf is None:
            buf = g.detach().clone()
        else:
            buf.mul_(momentum).add_(g, alpha=1 - dampening)
        g = g.add(buf, alpha=momentum) if nesterov else buf
    θ.add_(g, alpha=-lr)
    return buf


def sgd_foreach(θs, gs, bufs, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
                nesterov=False, maximize=False):
    """`sgd_step` on lists of tensors (one device and dtype); fills None buffers in `bufs`."""
    if maximize:
        gs = torch._foreach_neg(gs)
    if weight_decay != 0:
        gs = torch._foreach_add(gs, θs, alpha=weight_decay)
    if momentum != 0:
        if any(b is None for b in bufs):
            for i, b in enumerate(bufs):
                if b is None:
                    bufs[i] = gs[i].detach().clone()
                else:
                    b.mul_(momentum).add_(gs[i], alpha=1 - dampening)
        else:
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, gs, alpha=1 - dampening)
        # Out of place for Nesterov, so that p.grad is never overwritten.
        gs = torch._foreach_add(gs, bufs, alpha=momentum) if nesterov else bufs
    torch._foreach_add_(θs, gs, alpha=-lr)
    return bufs


class SGD(Optimizer):
    """SGD with optional momentum μ, dampening τ, Nesterov momentum and weight decay λ."""

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False, foreach=None):
        check_lr(lr)
        check_non_negative(momentum, "momentum value")
        check_non_negative(weight_decay, "weight_decay value")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize,
                    "foreach": foreach}
        super().__init__(params, defaults)

    def _step_group(self, group, params, foreach):
        hyper = {"lr": float(group["lr"]), "momentum": group["momentum"],
                 "dampening": group["dampening"], "weight_decay": group["weight_decay"],
                 "nesterov": group["nesterov"], "maximize": group["maximize"]}
        bufs = [self.state[p].get("momentum_buffer") for p in params]
        if foreach:
            for θs, gs, bs in grouped([params, [p.grad for p in params], bufs]):
                new = sgd_foreach(θs, gs, list(bs), **hyper)
                self._store(θs, new, group)
        else:
            self._store(params, [sgd_step(p, p.grad, b, **hyper)
                                 for p, b in zip(params, bufs)], group)

    def _store(self, params, bufs, group):
        if group["momentum"] != 0:
            for p, b in zip(params, bufs):
                self.state[p]["momentum_buffer"] = b

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)

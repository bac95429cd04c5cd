"""RMSprop (Hinton, 2012): divide the gradient by a moving root-mean-square of itself.

A drop-in for `torch.optim.RMSprop` (centered and momentum variants included):

    opt = hpclab.optim.RMSprop(model.parameters(), lr=1e-2, alpha=0.99, centered=True)
"""

from __future__ import annotations

import torch

from .base import Optimizer, advance, check_lr, check_non_negative, grouped


def rmsprop_step(θ, g, v, *, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 buf=None, g_avg=None, maximize=False):
    r"""One RMSprop step on the tensor θ, in place.

        g ← −g                         if maximize
        g ← g + λ θ                    weight decay λ
        v ← α v + (1 − α) g²           moving average of g² (state "square_avg")
        centered (g_avg given):  ḡ ← α ḡ + (1 − α) g,  d = √(v − ḡ²) + ε
        otherwise:               d = √v + ε
        momentum μ > 0 (buf given):  b ← μ b + g / d,  θ ← θ − η b
        otherwise:                   θ ← θ − η g / d
    """
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g.add(θ, alpha=weight_decay)
    v.mul_(alpha).addcmul_(g, g, value=1 - alpha)
    if g_avg is not None:
        g_avg.lerp_(g, 1 - alpha)
        d = v.addcmul(g_avg, g_avg, value=-1).sqrt_()
    else:
        d = v.sqrt()
    d.add_(eps)
    if buf is not None:
        buf.mul_(momentum).addcdiv_(g, d)
        θ.add_(buf, alpha=-lr)
    else:
        θ.addcdiv_(g, d, value=-lr)


def rmsprop_foreach(θs, gs, vs, *, lr, alpha=0.99, eps=1e-8, weight_decay=0.0,
                    momentum=0.0, bufs=None, g_avgs=None, maximize=False):
    """`rmsprop_step` on lists of tensors of one device and dtype."""
    if maximize:
        gs = torch._foreach_neg(gs)
    if weight_decay != 0:
        gs = torch._foreach_add(gs, θs, alpha=weight_decay)
    torch._foreach_mul_(vs, alpha)
    torch._foreach_addcmul_(vs, gs, gs, 1 - alpha)
    if g_avgs is not None:
        torch._foreach_lerp_(g_avgs, gs, 1 - alpha)
        ds = torch._foreach_addcmul(vs, g_avgs, g_avgs, -1)
        torch._foreach_sqrt_(ds)
    else:
        ds = torch._foreach_sqrt(vs)
    torch._foreach_add_(ds, eps)
    if bufs is not None:
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_addcdiv_(bufs, gs, ds)
        torch._foreach_add_(θs, bufs, alpha=-lr)
    else:
        torch._foreach_addcdiv_(θs, gs, ds, -lr)


class RMSprop(Optimizer):
    """RMSprop with smoothing α, optional centering, momentum μ and weight decay λ."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, foreach=None, maximize=False):
        check_lr(lr)
        check_non_negative(eps, "epsilon value")
        check_non_negative(momentum, "momentum value")
        check_non_negative(weight_decay, "weight_decay value")
        check_non_negative(alpha, "alpha value")
        defaults = {"lr": lr, "momentum": momentum, "alpha": alpha, "eps": eps,
                    "centered": centered,
                    "weight_decay": weight_decay, "foreach": foreach, "maximize": maximize}
        super().__init__(params, defaults)

    def _state(self, p, group):
        return self._lazy_state(p, "square_avg",
                                *(["momentum_buffer"] if group["momentum"] > 0 else []),
                                *(["grad_avg"] if group["centered"] else []))

    def _step_group(self, group, params, foreach):
        states = [self._state(p, group) for p in params]
        hyper = {"lr": float(group["lr"]), "alpha": group["alpha"], "eps": group["eps"],
                 "weight_decay": group["weight_decay"], "momentum": group["momentum"],
                 "maximize": group["maximize"]}
        # The step counter is not in the formula; it is kept for torch.optim compatibility.
        advance([s["step"] for s in states], foreach)
        lists = [params, [p.grad for p in params], [s["square_avg"] for s in states],
                 [s.get("momentum_buffer") for s in states],
                 [s.get("grad_avg") for s in states]]
        use_buf, use_avg = group["momentum"] > 0, group["centered"]
        if foreach:
            for θs, gs, vs, bufs, g_avgs in grouped(lists):
                rmsprop_foreach(θs, gs, vs, bufs=bufs if use_buf else None,
                                g_avgs=g_avgs if use_avg else None, **hyper)
        else:
            for θ, g, v, buf, g_avg in zip(*lists):
                rmsprop_step(θ, g, v, buf=buf, g_avg=g_avg, **hyper)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("momentum", 0)
            group.setdefault("centered", False)

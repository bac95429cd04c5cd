"""AdaGrad (Duchi, Hazan & Singer, 2011): a per-coordinate step that shrinks with Σ g².

A drop-in for `torch.optim.Adagrad`:

    opt = hpclab.optim.Adagrad(model.parameters(), lr=1e-2)

Coordinates that saw large gradients take small steps; the sum never decays, so the
steps keep shrinking (RMSprop and Adam replace the sum by a moving average).
"""

from __future__ import annotations

import torch

from .base import Optimizer, advance, check_lr, check_non_negative, grouped, new_step


def adagrad_step(θ, g, s, t, *, lr, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                 maximize=False):
    r"""One AdaGrad step at step number t on the tensor θ, in place.

        g ← −g                        if maximize
        g ← g + λ θ                   weight decay λ
        η_t = η / (1 + (t − 1) δ)     learning-rate decay δ (`lr_decay`)
        s ← s + g²                    the sum of squared gradients (state "sum")
        θ ← θ − η_t g / (√s + ε)
    """
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g.add(θ, alpha=weight_decay)
    lr_t = lr / (1 + (t - 1) * lr_decay)
    s.addcmul_(g, g, value=1)
    θ.addcdiv_(g, s.sqrt().add_(eps), value=-lr_t)


def adagrad_foreach(θs, gs, ss, ts, *, lr, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                    maximize=False):
    """`adagrad_step` on lists of tensors of one device and dtype."""
    if maximize:
        gs = torch._foreach_neg(gs)
    if weight_decay != 0:
        gs = torch._foreach_add(gs, θs, alpha=weight_decay)
    torch._foreach_addcmul_(ss, gs, gs, 1)
    denoms = torch._foreach_sqrt(ss)
    torch._foreach_add_(denoms, eps)
    torch._foreach_addcdiv_(θs, gs, denoms, [-lr / (1 + (t - 1) * lr_decay) for t in ts])


class Adagrad(Optimizer):
    """AdaGrad with learning-rate decay, weight decay and an initial accumulator value."""

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0,
                 initial_accumulator_value=0, eps=1e-10, foreach=None, *, maximize=False):
        check_lr(lr)
        check_non_negative(lr_decay, "lr_decay value")
        check_non_negative(weight_decay, "weight_decay value")
        check_non_negative(initial_accumulator_value, "initial_accumulator_value value")
        check_non_negative(eps, "epsilon value")
        defaults = {"lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
                    "initial_accumulator_value": initial_accumulator_value,
                    "foreach": foreach, "maximize": maximize}
        super().__init__(params, defaults)
        # Like torch.optim, the state exists from the start: s₀ is a hyperparameter.
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["step"] = new_step()
                self.state[p]["sum"] = torch.full_like(
                    p, initial_accumulator_value, memory_format=torch.preserve_format)

    def _step_group(self, group, params, foreach):
        hyper = {"lr": float(group["lr"]), "lr_decay": group["lr_decay"], "eps": group["eps"],
                 "weight_decay": group["weight_decay"], "maximize": group["maximize"]}
        states = [self.state[p] for p in params]
        lists = [params, [p.grad for p in params], [s["sum"] for s in states],
                 [s["step"] for s in states]]
        if foreach:
            for θs, gs, ss, steps in grouped(lists):
                adagrad_foreach(θs, gs, ss, advance(steps, foreach=True), **hyper)
        else:
            for θ, g, s, step in zip(*lists):
                step += 1
                adagrad_step(θ, g, s, step.item(), **hyper)

"""AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay.

A drop-in for `torch.optim.AdamW` (note the default weight_decay=1e-2):

    opt = hpclab.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

Adam's "L2 in the gradient", g ← g + λθ, sends the decay through m̂ / √v̂, so parameters
with large gradients are decayed less. AdamW shrinks θ directly instead,

    θ ← θ − η λ θ,   then the Adam step on the undecayed g (see adam.adam_step).
"""

from __future__ import annotations

from .adam import Adam


class AdamW(Adam):
    """Adam with decoupled weight decay λ (`weight_decay`, default 0.01)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, decoupled_weight_decay=True)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True

"""Gradient clipping: keep one bad batch from throwing the parameters far away.

Same signatures as torch.nn.utils, call between `backward()` and `step()`:

    loss.backward()
    total = hpclab.optim.clip_grad_norm_(model.parameters(), max_norm=1.0)
    opt.step()

Clipping by norm keeps the direction of the whole gradient and only shortens it;
clipping by value clamps each coordinate and so can change the direction.
"""

from __future__ import annotations

import torch


def _grads(parameters) -> list[torch.Tensor]:
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False,
                    foreach=None) -> torch.Tensor:
    r"""Scale all gradients together so that their joint p-norm is at most `max_norm`.

        ‖g‖ = ‖(‖g₁‖, ‖g₂‖, …, ‖gₙ‖)‖          (the norm of the concatenated gradients)
        g ← g · min(1, c / (‖g‖ + 10⁻⁶))          (c = max_norm)

    Returns ‖g‖ before clipping (log it: spikes show instabilities). `foreach` picks
    `torch._foreach_norm` / `_foreach_mul_` (default: on whenever the grads allow it).
    """
    grads = _grads(parameters)
    norm_type = float(norm_type)
    if not grads:
        return torch.tensor(0.0)
    device = grads[0].device
    use_foreach = foreach is not False
    if use_foreach and len({(g.device, g.dtype) for g in grads}) == 1:
        norms = torch._foreach_norm(grads, norm_type)
    else:
        norms = [torch.linalg.vector_norm(g, norm_type) for g in grads]
    total = torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]), norm_type)
    if error_if_nonfinite and not torch.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients is non-finite "
                           f"({total.item()}), so it cannot be clipped; set "
                           "error_if_nonfinite=False to clip anyway")
    # torch.clamp rather than `if coef < 1`: no device-to-host sync on a GPU.
    coef = torch.clamp(float(max_norm) / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.to(g.device))
    return total


def clip_grad_value_(parameters, clip_value, foreach=None) -> None:
    """Clamp every gradient coordinate into [−c, c] (c = clip_value), in place."""
    clip_value = float(clip_value)
    grads = _grads(parameters)
    if not grads:
        return
    if foreach is not False and len({(g.device, g.dtype) for g in grads}) == 1:
        torch._foreach_clamp_min_(grads, -clip_value)
        torch._foreach_clamp_max_(grads, clip_value)
    else:
        for g in grads:
            g.clamp_(min=-clip_value, max=clip_value)

"""Learning-rate schedules: linear warm-up, step decay, cosine, warm-up + cosine.

Each is a `torch.optim.lr_scheduler.LRScheduler`, so it works with any optimizer (ours or
torch's), is saved by `state_dict()`, and is stepped once per iteration after the
optimizer:

    opt = hpclab.optim.AdamW(model.parameters(), lr=3e-4)
    sched = hpclab.optim.WarmupCosine(opt, warmup_steps=100, total_steps=2000)
    for batch in data: ...; opt.step(); sched.step()

Every schedule here is a closed form η_t = f(η, t) of the base rate η and the step t
(`lr_at`), which is easier to read and to plot than torch's recursive updates; the tests
check that they agree with torch's LinearLR, StepLR and CosineAnnealingLR.
"""

from __future__ import annotations

import math

from torch.optim.lr_scheduler import LRScheduler


class _ClosedForm(LRScheduler):
    """A schedule given by `lr_at(base_lr, t)`; subclasses set attributes, then super()."""

    def lr_at(self, base_lr: float, t: int) -> float:
        raise NotImplementedError

    def get_lr(self):
        return [self.lr_at(base, self.last_epoch) for base in self.base_lrs]

    _get_closed_form_lr = get_lr


def _check_positive_int(name, value):
    if not (isinstance(value, int) and value > 0):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class LinearWarmup(_ClosedForm):
    r"""η_t = η · (s + (1 − s) · min(t, W) / W): from s·η up to η in W steps, then flat.

    Warm-up keeps Adam's first, noisy steps (and large-batch training) from diverging.
    s = `start_factor` (0 by default: the first step does not move the weights).
    """

    def __init__(self, optimizer, warmup_steps: int, start_factor: float = 0.0,
                 last_epoch: int = -1):
        _check_positive_int("warmup_steps", warmup_steps)
        if not 0.0 <= start_factor <= 1.0:
            raise ValueError(f"start_factor must be in [0, 1], got {start_factor}")
        self.warmup_steps, self.start_factor = warmup_steps, start_factor
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, t):
        s = self.start_factor
        return base_lr * (s + (1 - s) * min(t, self.warmup_steps) / self.warmup_steps)


class StepDecay(_ClosedForm):
    r"""η_t = η · γ^⌊t / s⌋: multiply by γ (`gamma`) every s (`step_size`) steps."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        _check_positive_int("step_size", step_size)
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, t):
        return base_lr * self.gamma ** (t // self.step_size)


def _cosine(base_lr, eta_min, t, T):
    """η_min + (η − η_min) · (1 + cos(π t / T)) / 2, held at η_min after t = T."""
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * min(t, T) / T)) / 2


class Cosine(_ClosedForm):
    r"""η_t = η_min + (η − η_min)(1 + cos(π t / T)) / 2 for t ≤ T (`T_max`), then η_min."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        _check_positive_int("T_max", T_max)
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, t):
        return _cosine(base_lr, self.eta_min, t, self.T_max)


class WarmupCosine(_ClosedForm):
    r"""Linear warm-up for W steps, then cosine decay to η_min at step `total_steps`.

        η_t = η (s + (1 − s) t / W)                            for t < W
        η_t = η_min + (η − η_min)(1 + cos(π (t − W) / (T − W))) / 2   for W ≤ t ≤ T

    The schedule of most transformer recipes (GPT, BERT, ViT).
    """

    def __init__(self, optimizer, warmup_steps: int, total_steps: int, eta_min: float = 0.0,
                 start_factor: float = 0.0, last_epoch: int = -1):
        _check_positive_int("warmup_steps", warmup_steps)
        if not (isinstance(total_steps, int) and total_steps > warmup_steps):
            raise ValueError(f"total_steps must be an integer > warmup_steps={warmup_steps}, "
                             f"got {total_steps!r}")
        self.warmup_steps, self.total_steps = warmup_steps, total_steps
        self.eta_min, self.start_factor = eta_min, start_factor
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, t):
        W, s = self.warmup_steps, self.start_factor
        if t < W:
            return base_lr * (s + (1 - s) * t / W)
        return _cosine(base_lr, self.eta_min, t - W, self.total_steps - W)

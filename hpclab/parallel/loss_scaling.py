"""Dynamic loss scaling: how fp16 training survives gradients too small for 16 bits.

fp16 flushes values below ~6e-8 to zero, and many gradients live there. So we train on
s·J instead of J: every gradient is multiplied by s on the way back, and divided by s
before the optimizer sees it. The scale s is chosen dynamically:

    g  ← ∇(s·J) / s                          (unscale)
    if any(g is inf or nan):                 (overflow: s was too large)
        skip the step;  s ← s·β_backoff;     k ← 0
    else:
        θ ← step(θ, g);  k ← k + 1
        if k = N_growth:  s ← s·β_growth;    k ← 0

with s₀ = 2¹⁶, β_growth = 2, β_backoff = ½, N_growth = 2000 — the same rule and defaults
as `torch.amp.GradScaler`, against which the tests compare the scale trajectory.

    scaler = DynamicLossScaler()
    scaler.scale(loss).backward()
    scaler.step(optimizer)      # unscales, skips the step on overflow
    scaler.update()             # adjusts s
"""

from __future__ import annotations

import math

import torch


class DynamicLossScaler:
    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000):
        if not (init_scale > 0 and math.isfinite(init_scale)):
            raise ValueError(f"init_scale must be a finite number > 0, got {init_scale}")
        if growth_factor <= 1.0:
            raise ValueError(f"growth_factor must be > 1, got {growth_factor}")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"backoff_factor must be in (0, 1), got {backoff_factor}")
        if not isinstance(growth_interval, int) or growth_interval < 1:
            raise ValueError(f"growth_interval must be a positive int, got {growth_interval!r}")
        self.scale_value = float(init_scale)
        self.growth_factor = growth_factor
        self.backoff_factor = backoff_factor
        self.growth_interval = growth_interval
        self.good_steps = 0          # k: finite steps since the last change of s
        self._found_inf: bool | None = None   # set by unscale_, consumed by update
        self._unscaled: set[int] = set()

    def get_scale(self) -> float:
        return self.scale_value

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """s·J: backpropagate this instead of the loss."""
        return loss * self.scale_value

    def unscale_(self, optimizer: torch.optim.Optimizer) -> bool:
        """Divide every gradient by s in place; return True if any is inf or nan.

        Call it before clipping gradients, so the clip threshold applies to true gradients.
        """
        if id(optimizer) in self._unscaled:
            raise RuntimeError("unscale_() was already called on this optimizer since the "
                               "last update(); call it at most once per step")
        inv_scale = 1.0 / self.scale_value
        found_inf = False
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.grad.mul_(inv_scale)
                found_inf = found_inf or not bool(torch.isfinite(p.grad).all())
        self._unscaled.add(id(optimizer))
        self._found_inf = bool(self._found_inf) or found_inf
        return found_inf

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Unscale (if not done yet) and step, unless a gradient overflowed. True if stepped."""
        if id(optimizer) not in self._unscaled:
            self.unscale_(optimizer)
        if self._found_inf:
            return False
        optimizer.step()
        return True

    def update(self) -> None:
        """Adjust s after the step: back off on overflow, grow after N_growth good steps."""
        if self._found_inf is None:
            raise RuntimeError("update() needs a step(optimizer) or unscale_() first")
        if self._found_inf:
            self.scale_value *= self.backoff_factor
            self.good_steps = 0
        else:
            self.good_steps += 1
            if self.good_steps == self.growth_interval:
                self.scale_value *= self.growth_factor
                self.good_steps = 0
        self._found_inf = None
        self._unscaled.clear()

    def state_dict(self) -> dict:
        return {"scale": self.scale_value, "growth_factor": self.growth_factor,
                "backoff_factor": self.backoff_factor,
                "growth_interval": self.growth_interval, "good_steps": self.good_steps}

    def load_state_dict(self, state: dict) -> None:
        self.scale_value = float(state["scale"])
        self.growth_factor = state["growth_factor"]
        self.backoff_factor = state["backoff_factor"]
        self.growth_interval = state["growth_interval"]
        self.good_steps = state["good_steps"]

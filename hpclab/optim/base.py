"""The plumbing every hpclab optimizer shares: parameter groups, state, the step loop.

A concrete optimizer (sgd.py, adam.py ...) subclasses `Optimizer` and writes one method,
`_step_group(group, params, foreach)`, that gathers the per-parameter state and calls the
optimizer's plain step function (one tensor at a time) or its `_foreach_*` twin (all the
tensors of a group at once). Everything else comes from `torch.optim.Optimizer`:
`param_groups`, `state`, `zero_grad`, `state_dict`/`load_state_dict`, step hooks, and
compatibility with `torch.optim.lr_scheduler`.

    class MyOpt(Optimizer):
        def _step_group(self, group, params, foreach):
            for p in params:
                my_step(p, p.grad, lr=group["lr"])

Why `state["step"]` is a 0-d float tensor and not an int: torch.optim stores it that way,
so a state_dict saved by torch.optim.Adam loads into hpclab.optim.Adam and back.
"""

from __future__ import annotations

import torch

# Devices with fast multi-tensor (`torch._foreach_*`) kernels; torch.optim picks foreach
# by default only there, because on CPU the foreach ops fall back to a per-tensor loop.
_FOREACH_DEVICES = ("cuda", "xpu")


def check_lr(lr) -> None:
    """η must be a number (or a 1-element tensor) >= 0; messages are torch.optim's."""
    if isinstance(lr, torch.Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    check_non_negative(lr, "learning rate")


def check_non_negative(value, what: str) -> None:
    """Raise torch.optim's ValueError, naming the value, when `value` < 0."""
    if not 0.0 <= value:
        raise ValueError(f"Invalid {what}: {value}")


def check_betas(betas) -> None:
    """β₁ and β₂ must lie in [0, 1): β = 1 would freeze a moving average forever."""
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta}")


def new_step() -> torch.Tensor:
    """A fresh step counter t = 0, stored like torch.optim stores it (0-d, on the CPU)."""
    return torch.tensor(0.0, dtype=torch.get_default_dtype())


def advance(steps: list[torch.Tensor], foreach: bool) -> list[int]:
    """t ← t + 1 for every counter; return the new values as Python numbers."""
    if foreach:
        # Wrapping the 1 once avoids a scalar-to-tensor conversion per counter on CPU.
        torch._foreach_add_(steps, torch.tensor(1.0), alpha=1.0)
    else:
        for s in steps:
            s += 1
    return [s.item() for s in steps]


def grouped(tensor_lists: list[list]):
    """Split parallel lists of tensors by (device, dtype): one foreach call per bucket."""
    buckets = torch.optim.Optimizer._group_tensors_by_device_and_dtype(tensor_lists)
    for lists, _ in buckets.values():
        yield lists


class Optimizer(torch.optim.Optimizer):
    """Base class: runs `_step_group` for each parameter group with gradients."""

    def step(self, closure=None):
        """Perform a single optimization step; `closure` re-evaluates the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                # Parameters without a gradient (frozen, or unused this step) are skipped:
                # their state does not advance, exactly as in torch.optim.
                params = [p for p in group["params"] if p.grad is not None]
                if not params:
                    continue
                for p in params:
                    if p.grad.is_sparse:
                        raise RuntimeError(f"{type(self).__name__} does not support "
                                           "sparse gradients")
                self._step_group(group, params, self._use_foreach(group, params))
        return loss

    def _lazy_state(self, p: torch.Tensor, *buffers: str) -> dict:
        """p's state, made on its first step: the step count t and zero buffers by name
        (the names and their order are torch.optim's, so state_dicts interchange)."""
        state = self.state[p]
        if not state:
            state["step"] = new_step()
            for name in buffers:
                state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @staticmethod
    def _use_foreach(group, params) -> bool:
        if group.get("foreach") is not None:
            return bool(group["foreach"])
        return all(p.device.type in _FOREACH_DEVICES for p in params)

    def _step_group(self, group: dict, params: list[torch.Tensor], foreach: bool) -> None:
        raise NotImplementedError

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", None)
            group.setdefault("maximize", False)

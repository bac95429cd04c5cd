"""Model states: the bytes a training run keeps for every parameter, whatever the batch.

For Ψ parameters, training holds (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations
Toward Training Trillion Parameter Models", section 3.1; Hugging Face's Ultra-Scale
Playbook, "Memory usage in Transformers"):

    parameters      e_θ Ψ                    the weights forward and backward read
    gradients       e_g Ψ  (+ 4Ψ)            (+ an fp32 accumulation buffer, if kept)
    optimizer       (e_master + k e_s) Ψ     an fp32 master copy under mixed precision,
                                             and k moments of e_s bytes each

with k = 0 for plain SGD, 1 for SGD with momentum (the velocity), 2 for Adam/AdamW
(m and v), 3 for Adam with AMSGrad (v_max as well). The ZeRO paper calls the optimizer
part K per parameter: K = 4 + 2·4 = 12 for mixed-precision Adam.

    fp32 Adam                 4 + 4 + (0 + 2·4)      = 16 B per parameter
    mixed-precision Adam      2 + 2 + (4 + 2·4)      = 16 B   (1B → 16 GB, 7B → 112 GB)
      + fp32 grad accumulation 2 + (2 + 4) + 12      = 20 B   (7B → 140 GB, 70B → 1400 GB)
    SGD with momentum, fp32   4 + 4 + 4              = 12 B

    from hpclab.memory import MIXED, state_bytes
    state_bytes(7e9, "adam", MIXED).total / 1e9          # 112.0 GB

Not counted: the per-tensor step counters of torch.optim's Adam (4 bytes per parameter
*tensor*, not per parameter) and temporary buffers of the optimizer step.
"""

from __future__ import annotations

from dataclasses import dataclass

# k: the moments each optimizer keeps per parameter.
MOMENTS = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2, "amsgrad": 3}


@dataclass(frozen=True)
class Precision:
    """Bytes per element of each kind of tensor (4 = fp32, 2 = fp16/bf16)."""
    param_bytes: int = 4        # e_θ: the weights the model computes with
    grad_bytes: int = 4         # e_g: their gradients
    master_bytes: int = 0       # e_master: an fp32 master copy of the weights (0: none)
    state_bytes: int = 4        # e_s: each optimizer moment
    accum_bytes: int = 0        # an fp32 gradient accumulation buffer (0: none)
    activation_bytes: int = 4   # e: saved activations (masks take 1 byte, statistics 4)
    name: str = "custom"

    def __post_init__(self):
        for field in ("param_bytes", "grad_bytes", "state_bytes", "activation_bytes"):
            value = getattr(self, field)
            if value not in (1, 2, 4, 8):
                raise ValueError(f"{field} must be 1, 2, 4 or 8 bytes, got {value}")
        for field in ("master_bytes", "accum_bytes"):
            value = getattr(self, field)
            if value not in (0, 2, 4):
                raise ValueError(f"{field} must be 0 (none), 2 or 4 bytes, got {value}")


FP32 = Precision(4, 4, 0, 4, 0, 4, name="fp32")
MIXED = Precision(2, 2, 4, 4, 0, 2, name="mixed (bf16 + fp32 master)")
MIXED_FP32_GRADS = Precision(2, 2, 4, 4, 4, 2, name="mixed + fp32 grad accumulation")
BF16 = Precision(2, 2, 0, 2, 0, 2, name="pure bf16")
PRECISIONS = {p.name: p for p in (FP32, MIXED, MIXED_FP32_GRADS, BF16)}


@dataclass(frozen=True)
class StateBytes:
    """Bytes of parameters, gradients and optimizer state (summed, or per parameter)."""
    parameters: float
    gradients: float
    optimizer: float

    @property
    def total(self) -> float:
        return self.parameters + self.gradients + self.optimizer

    def __mul__(self, n: float) -> StateBytes:
        return StateBytes(self.parameters * n, self.gradients * n, self.optimizer * n)

    __rmul__ = __mul__


def check_optimizer(optimizer: str) -> int:
    """k for `optimizer`, or a ValueError naming the choices."""
    if optimizer not in MOMENTS:
        raise ValueError(f"optimizer must be one of {sorted(MOMENTS)}, got {optimizer!r}")
    return MOMENTS[optimizer]


def bytes_per_parameter(optimizer: str, precision: Precision) -> StateBytes:
    """(e_θ, e_g + e_accum, e_master + k e_s): the bytes each parameter costs."""
    k = check_optimizer(optimizer)
    return StateBytes(parameters=precision.param_bytes,
                      gradients=precision.grad_bytes + precision.accum_bytes,
                      optimizer=precision.master_bytes + k * precision.state_bytes)


def state_bytes(psi: float, optimizer: str, precision: Precision) -> StateBytes:
    """Model states of Ψ parameters on one device: Ψ · bytes_per_parameter."""
    if psi < 0:
        raise ValueError(f"the parameter count Ψ must be >= 0, got {psi}")
    return bytes_per_parameter(optimizer, precision) * psi

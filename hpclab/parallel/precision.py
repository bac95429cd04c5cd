"""Mixed precision: compute in 16 bits where it is safe, keep the master weights in 32.

Under `torch.autocast`, matrix products and convolutions run in a 16-bit type while
reductions, losses and the optimizer stay in float32:

    bf16   8 exponent bits like fp32: the same range, 3 significant digits. No scaling
           needed; on CPU and recent GPUs.
    fp16   5 exponent bits: smallest normal 6.1e-5, subnormals to 6e-8. Gradients below
           that become 0, so the loss is scaled by s (DynamicLossScaler) first.

    step = mixed_precision_step(model, optimizer, (x, y), loss_fn, dtype=torch.bfloat16)
    # fp16 on a GPU:
    scaler = DynamicLossScaler()
    step = mixed_precision_step(model, optimizer, (x, y), loss_fn, torch.float16, scaler)
"""

from __future__ import annotations

import torch

from hpclab.parallel.loss_scaling import DynamicLossScaler

HALF_TYPES = (torch.bfloat16, torch.float16)


def mixed_precision_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch,
                         loss_fn, dtype: torch.dtype = torch.bfloat16,
                         scaler: DynamicLossScaler | None = None) -> float:
    """One step with the forward under autocast(dtype); returns the (unscaled) loss.

    With a scaler the loss is multiplied by s before backward, gradients are unscaled
    before the step, and a step with inf/nan gradients is skipped (see loss_scaling).
    """
    if dtype not in HALF_TYPES:
        raise ValueError(f"dtype must be torch.bfloat16 or torch.float16, got {dtype}")
    x, y = batch
    device_type = x.device.type
    if dtype == torch.float16 and device_type == "cpu":
        raise ValueError("fp16 autocast is for CUDA devices; on CPU use dtype=torch.bfloat16")
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device_type, dtype=dtype):
        loss = loss_fn(model(x), y)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return float(loss.detach())


def fp16_flush_fraction(values: torch.Tensor, scale: float = 1.0) -> float:
    """Fraction of the non-zero `values` that become 0 when s·value is stored in fp16.

    With s = 1 this is how much of a gradient fp16 silently loses; with s = 2¹⁶ most of
    it survives — the reason for loss scaling.
    """
    nonzero = values[values != 0]
    if nonzero.numel() == 0:
        return 0.0
    flushed = (nonzero.double() * scale).to(torch.float16) == 0
    return float(flushed.double().mean())

"""The stages by number, for code that takes the stage as a setting (benchmarks, lectures).

    opt = zero_optimizer(2, model, hpclab.optim.Adam, lr=1e-3)
    opt = zero_optimizer(3, model, hpclab.optim.Adam, units=model.blocks, lr=1e-3)
"""

from __future__ import annotations

from torch import nn

from hpclab.parallel.zero.base import ShardedOptimizer
from hpclab.parallel.zero.zero1 import ZeRO1
from hpclab.parallel.zero.zero2 import ZeRO2
from hpclab.parallel.zero.zero3 import ZeRO3

STAGES = {1: ZeRO1, 2: ZeRO2, 3: ZeRO3}


def zero_optimizer(stage: int, model: nn.Module, optimizer_class, *, units=None,
                   bucket_cap_mb: float = 25, group=None, timeout: float = 60.0,
                   **defaults) -> ShardedOptimizer:
    """ZeRO stage `stage` (1, 2 or 3) over `model`'s parameters; `units` for stage 3,
    `bucket_cap_mb` for stages 1–2."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {sorted(STAGES)}, got {stage!r}")
    if stage == 3:
        return ZeRO3(model, optimizer_class, units=units, group=group, timeout=timeout,
                     **defaults)
    if units is not None:
        raise ValueError(f"units shard parameters per layer, which is stage 3; got stage "
                         f"{stage} (use bucket_cap_mb to size stage {stage}'s buckets)")
    return STAGES[stage](model.parameters(), optimizer_class, bucket_cap_mb=bucket_cap_mb,
                         group=group, timeout=timeout, **defaults)

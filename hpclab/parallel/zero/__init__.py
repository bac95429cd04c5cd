"""ZeRO: data parallelism without N_d copies of the model state (Rajbhandari et al. 2020).

Plain data parallelism on N_d ranks holds, on every rank, for Ψ parameters trained with
mixed-precision Adam (K = 12: fp32 master copy, m, v):

    2Ψ (fp16 parameters) + 2Ψ (fp16 gradients) + KΨ (optimizer state) = 16Ψ bytes

ZeRO shards what it can across the N_d ranks, one more term per stage:

    stage 1  ZeRO1  zero1.py   2Ψ + 2Ψ + KΨ/N_d        optimizer state sharded
    stage 2  ZeRO2  zero2.py   2Ψ + (2 + K)Ψ/N_d       + gradients, reduced during backward
    stage 3  ZeRO3  zero3.py   (2 + 2 + K)Ψ/N_d        + parameters, gathered per unit (FSDP)

Stages 1–2 move DP's 2Ψ·(N_d−1)/N_d per rank and step (a reduce-scatter and an
all-gather), stage 3 3Ψ·(N_d−1)/N_d (one more all-gather in backward). All are written
with hpclab.comm's reduce_scatter and all_gather (the textbook ring).

    from hpclab.parallel.zero import ZeRO1, ZeRO2, ZeRO3
    opt = ZeRO1(model.parameters(), hpclab.optim.Adam, lr=1e-3)         # or ZeRO2(...)
    opt = ZeRO3(model, hpclab.optim.Adam, units=model.blocks, lr=1e-3)
    loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()

    hpclab.memory.measure.held_states(model, opt)  # bytes by category
    save_sharded(folder, opt, step=10)           # checkpoint.py: each rank its shard
    load_sharded(folder, opt)                    # at any world size

shard.py holds the flat buffers with padding, base.py what the stages share, stages.py
`zero_optimizer(stage, model, ...)` for code that takes the stage as a number.
"""

from hpclab.parallel.zero.checkpoint import (
    consolidate,
    latest_sharded,
    load_sharded,
    save_sharded,
    sharded_path,
)
from hpclab.parallel.zero.shard import FlatLayout, ShardedGroup
from hpclab.parallel.zero.stages import STAGES, zero_optimizer
from hpclab.parallel.zero.zero1 import ZeRO1
from hpclab.parallel.zero.zero2 import ZeRO2
from hpclab.parallel.zero.zero3 import ZeRO3

__all__ = ["STAGES", "FlatLayout", "ShardedGroup", "ZeRO1", "ZeRO2", "ZeRO3",
           "consolidate", "latest_sharded", "load_sharded", "save_sharded",
           "sharded_path", "zero_optimizer"]

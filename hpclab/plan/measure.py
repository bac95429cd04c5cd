"""Measure what the planner predicts: step time of a configuration on local ranks, and
the cost model's tables of this machine.

    step_seconds(layout, cfg, batch=16)     # median step of `steps` after a warm-up
    local_costs(world=4)                    # MeasuredCosts (comm.measure.calibrate)

Each configuration runs on `layout.world_size` forked processes (run_local, gloo, one
thread each) training the tiny transformer on a fixed random batch with Adam; a step is
timed from a barrier on every rank, and its time is the slowest rank's (a step is over
when the last rank is done). The figure is the median over `steps` steps after `warmup`.

Without a pipeline (pp = 1) a step is built from hpclab's DP × TP pieces: `Mesh`
(hpclab.parallel.mesh) for the groups, `ParallelTransformer` for t > 1, and plain
data parallel (one flat all-reduce over the replicas, `Mesh.after_backward`) or ZeRO
stage 1–3 over the replicas (hpclab.parallel.zero). Pipelines need the 3-D trainer
(`SUPPORTED` says which layouts this module can run).
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.distributed as dist

from hpclab.cluster.spawn import run_local
from hpclab.comm.measure import calibrate
from hpclab.memory.measure import held_states
from hpclab.optim import Adam
from hpclab.parallel.mesh import Mesh
from hpclab.parallel.sequence_parallel import all_reduce_sequence_parallel_grads
from hpclab.parallel.tp_transformer import ParallelTransformer
from hpclab.parallel.zero import zero_optimizer
from hpclab.problems.transformer import TransformerConfig, lm_loss, tiny_transformer

from .configs import Layout

LR = 1e-3


def supported(layout: Layout) -> bool:
    """Whether `step_seconds` can run `layout` (the DP × TP pieces: no pipeline)."""
    return layout.pp == 1 and layout.micro_batches == 1


def synthetic_batch(cfg: TransformerConfig, batch: int, seed: int = 0):
    """A fixed (inputs, targets) of `batch` random token sequences, the same on every rank."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size + 1), generator=g)
    return ids[:, :-1], ids[:, 1:]


class _DPxTP:
    """One step of a pp = 1 layout: forward, backward, combine over the replicas, step."""

    def __init__(self, ctx, layout: Layout, cfg: TransformerConfig):
        self.mesh = Mesh(ctx, dp=layout.dp, tp=layout.tp)
        model = tiny_transformer(**vars(cfg))
        if layout.tp > 1:
            model = ParallelTransformer(model, self.mesh.tp,
                                        sequence_parallel=layout.sequence_parallel)
        self.model, self.layout = model, layout
        if layout.zero == 0:
            self.optimizer = Adam(model.parameters(), lr=LR)
        else:
            units = list(model.blocks) if layout.zero == 3 else None
            self.optimizer = zero_optimizer(layout.zero, model, Adam, units=units,
                                            group=self.mesh.dp.group,
                                            timeout=ctx.timeout, lr=LR)

    def backward(self, batch) -> float:
        x, y = self.mesh.shard(batch)
        loss = lm_loss(self.model(x), y)
        loss.backward()
        if self.layout.zero == 0:
            self.mesh.after_backward(self.model)
        else:   # ZeRO averages over the replicas in step()
            all_reduce_sequence_parallel_grads(self.model, self.mesh.tp)
        return loss.item()

    def step(self, batch) -> float:
        loss = self.backward(batch)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss


def _timed_steps(ctx, layout, cfg, batch, steps, warmup):
    trainer = _DPxTP(ctx, layout, cfg)
    data = synthetic_batch(cfg, batch)
    times = []
    for _ in range(warmup + steps):
        dist.barrier()
        start = time.perf_counter()
        trainer.step(data)
        times.append(time.perf_counter() - start)
    return times[warmup:]


def step_seconds(layout: Layout, cfg: TransformerConfig, batch: int, steps: int = 5,
                 warmup: int = 2, timeout: float = 300.0) -> float:
    """Median over `steps` of the slowest rank's step time of `layout`, in seconds."""
    if not supported(layout):
        raise ValueError(f"{layout} needs a pipeline trainer; this module runs layouts with "
                         f"pp = 1 and one micro-batch (supported(layout))")
    ranks = run_local(_timed_steps, layout.world_size, layout, cfg, batch, steps, warmup,
                      timeout=timeout)
    return statistics.median(max(r[k] for r in ranks) for k in range(steps))


def _held(ctx, layout, cfg, batch):
    trainer = _DPxTP(ctx, layout, cfg)
    data = synthetic_batch(cfg, batch)
    trainer.step(data)
    trainer.backward(data)   # the second backward: optimizer state and gradients exist
    return held_states(trainer.model, trainer.optimizer)


def held_bytes(layout: Layout, cfg: TransformerConfig, batch: int, timeout: float = 120.0):
    """hpclab.memory.measure.held_states of every rank after the second backward."""
    return run_local(_held, layout.world_size, layout, cfg, batch, timeout=timeout)


def _costs(ctx):
    return calibrate(ranks_per_node=ctx.world_size)


def local_costs(world: int, timeout: float = 300.0):
    """The message costs of `world` local ranks (comm.measure.calibrate, rank 0's copy:
    calibrate gives every rank the same tables)."""
    return run_local(_costs, world, timeout=timeout)[0]

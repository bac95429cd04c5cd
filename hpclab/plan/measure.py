"""Measure what the planner predicts: step time of a configuration on local ranks.

    step_seconds(layout, cfg, batch=16)     # median step of `steps` after a warm-up
    held_bytes(layout, cfg, batch=16)       # model states each rank holds
    local_costs(world=4)                    # α, β, α₂, β₂ of gloo and hpclab.comm's p2p

Each configuration runs on `layout.world_size` forked processes (run_local, gloo, one
thread each) training the tiny transformer with the 3-D trainer
(hpclab.parallel.parallel_3d.Trainer3D) and Adam on a fixed random batch; a step is
timed from a barrier on every rank, and its time is the slowest rank's (a step is over
when the last rank is done). The figure is the median over `steps` steps after `warmup`.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.distributed as dist

from hpclab.cluster.spawn import run_local
from hpclab.comm.cost_model import Params, fit_alpha_beta
from hpclab.comm.measure import ping_pong, time_all_reduces
from hpclab.memory.measure import held_states
from hpclab.optim import Adam
from hpclab.parallel.parallel_3d import Layout, Trainer3D
from hpclab.problems.transformer import TransformerConfig, tiny_transformer

LR = 1e-3
# the tiny model's messages: 4 B (the loss) … 1 MiB (its gradients)
CALIBRATION_SIZES = tuple(4 << (2 * k) for k in range(10))


def synthetic_batch(cfg: TransformerConfig, batch: int, seed: int = 0):
    """A fixed (inputs, targets) of `batch` random token sequences, the same on every rank."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size + 1), generator=g)
    return ids[:, :-1], ids[:, 1:]


def trainer(ctx, layout: Layout, cfg: TransformerConfig) -> Trainer3D:
    return Trainer3D(ctx, layout, tiny_transformer(**vars(cfg)), Adam, lr=LR)


def _timed_steps(ctx, layout, cfg, batch, steps, warmup):
    run, data = trainer(ctx, layout, cfg), synthetic_batch(cfg, batch)
    times = []
    for _ in range(warmup + steps):
        dist.barrier()
        start = time.perf_counter()
        run.step(data)
        times.append(time.perf_counter() - start)
    return times[warmup:]


def step_seconds(layout: Layout, cfg: TransformerConfig, batch: int, steps: int = 5,
                 warmup: int = 2, timeout: float = 300.0) -> float:
    """Median over `steps` of the slowest rank's step time of `layout`, in seconds."""
    ranks = run_local(_timed_steps, layout.world_size, layout, cfg, batch, steps, warmup,
                      timeout=timeout)
    return statistics.median(max(r[k] for r in ranks) for k in range(steps))


def _held(ctx, layout, cfg, batch):
    run, data = trainer(ctx, layout, cfg), synthetic_batch(cfg, batch)
    run.step(data)
    run.step(data)   # from the second step on the optimizer state exists
    return run.mesh.stage, held_states(run.chunks, run.optimizer)


def held_bytes(layout: Layout, cfg: TransformerConfig, batch: int, timeout: float = 120.0):
    """(pipeline stage, hpclab.memory.measure.held_states) of every rank after two steps
    (gradients still held: Trainer3D clears them at the start of a step)."""
    return run_local(_held, layout.world_size, layout, cfg, batch, timeout=timeout)


def _link_times(ctx, sizes, repeats):
    all_reduces = {n: time_all_reduces(torch.zeros(max(n // 4, 1)), ["torch"], repeats)["torch"]
                   for n in sizes}
    return all_reduces, ping_pong(sizes, repeats)


def local_costs(world: int, sizes=CALIBRATION_SIZES, repeats: int = 5,
                timeout: float = 300.0) -> Params:
    """α, β, α₂, β₂ of `world` local ranks as the 3-D trainer uses them: its collectives
    are torch.distributed's (gloo), its pipeline messages hpclab.comm's send/recv. So

        α, β      fitted to the one-way message time (comm.measure.ping_pong)
        α₂, β₂    fitted to gloo's all-reduce read as the ring, t = 2(p−1)·(α₂ + (n/p)·β₂):
                  t/(2(p−1)) against n/p; its additions are inside, γ = 0

    each time the best of `repeats` (comm.measure: the others only ever add time)."""
    if world < 2:
        raise ValueError(f"message costs need at least 2 ranks, got world={world}")
    all_reduces, one_way = run_local(_link_times, world, sizes, repeats, timeout=timeout)[0]
    alpha, beta = fit_alpha_beta(list(one_way), list(one_way.values()))
    steps = 2 * (world - 1)
    alpha2, beta2 = fit_alpha_beta([n / world for n in all_reduces],
                                   [t / steps for t in all_reduces.values()])
    return Params(alpha, beta, 0.0, beta_duplex=beta2, alpha_duplex=alpha2)

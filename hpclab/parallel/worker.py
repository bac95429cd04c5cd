"""What every rank runs for `Trainer.fit`: the training loop with DDP, timed and checkpointed.

    train_rank(ctx, spec) -> {"records": [...], "step": s, "stopped": bool, "params": ...}

One step on rank r (B = global batch, p ranks, a = accumulation steps) is the
single-process step, hpclab.train.train_step, with our DDP as the model:

    idx      = next B/p indices of this rank's shard      (DistributedSampler)
    for each of the a micro-batches:                      (no_sync on all but the last)
        J    = loss(model(x), y) / a                      (t_forward)
        J.backward()                                      (t_backward; gradients averaged
                                                           over ranks in the last one)
    optimizer.step()                                      (t_optim)

Before the last backward the ranks agree on the loss (train_step): a NaN or ±inf on any
rank stops every rank at that step with the same NonFiniteLossError. The time DDP waited
for gradients after backward is t_comm (exposed communication) and is not counted in
t_backward. Every `checkpoint_every` steps all ranks hand their RNG states to rank 0,
which writes an atomic checkpoint. Every `stop_check_every` steps the ranks agree (one
tiny all-reduce) on whether the notebook asked them to stop. With config.mfu each rank
measures its peak once (hpclab.flops.peak_flops: a GPU's data sheet, else matmuls for
0.25 s) and every record carries the step's model FLOPs utilisation, extra["mfu"]. The
same function runs on ipyparallel engines and under run_local (tests).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from hpclab.flops import mfu, peak_flops, training_flops
from hpclab.parallel.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from hpclab.parallel.ddp import DistributedDataParallel
from hpclab.parallel.live import LivePublisher
from hpclab.parallel.sampler import DistributedSampler
from hpclab.train import train_step


@dataclass
class RankJob:
    """Everything a rank needs, shipped from the notebook in one object."""
    model_fn: Callable[[], torch.nn.Module]
    data_fn: Callable[[], tuple]
    optimizer_fn: Callable[[Any], torch.optim.Optimizer]
    config: Any                                   # TrainerConfig
    steps: int
    resume: str | None = None                     # checkpoint path, or "latest"
    push_address: str | None = None               # live metrics; None = off
    control_address: str | None = None
    return_params: bool = False


def loss_value(name: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if name == "cross_entropy":
        if out.dim() == 3:   # a language model: (batch, T, vocab) logits, (batch, T) targets
            return F.cross_entropy(out.reshape(-1, out.size(-1)), y.reshape(-1))
        return F.cross_entropy(out, y)
    if name == "mse":
        return F.mse_loss(out.reshape(y.shape), y)
    raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {name!r}")


def _restore(ctx, spec: RankJob, ddp, optimizer, sampler) -> int:
    """Rank 0 reads the checkpoint and sends it to all ranks; returns the step to go on from."""
    cfg = spec.config
    state = [None]
    if ctx.rank == 0:
        path = spec.resume
        if path == "latest":
            if not cfg.checkpoint_dir:
                raise ValueError("resume='latest' needs config.checkpoint_dir")
            path = latest_checkpoint(cfg.checkpoint_dir)
        state = [load_checkpoint(path) if path is not None else None]
    dist.broadcast_object_list(state, src=0, group=ctx.group)
    state = state[0]
    if state is None:   # "latest" and nothing written yet: a fresh start
        return 0
    ddp.module.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    sampler.load_state_dict(state["sampler"])
    if len(state["rng"]) == ctx.world_size:
        set_rng_state(state["rng"][ctx.rank])
    return state["step"]


def _checkpoint(ctx, spec: RankJob, ddp, optimizer, sampler, step: int) -> None:
    cfg = spec.config
    rngs = [None] * ctx.world_size
    dist.all_gather_object(rngs, rng_state(), group=ctx.group)
    if ctx.rank == 0:
        state = {"step": step, "model": ddp.module.state_dict(),
                 "optimizer": optimizer.state_dict(), "sampler": sampler.state_dict(),
                 "rng": rngs, "world_size": ctx.world_size}
        save_checkpoint(checkpoint_path(cfg.checkpoint_dir, step), state,
                        keep=cfg.keep_checkpoints)


def train_on_engine(ctx, spec: RankJob, model_fn, data_fn, optimizer_fn) -> dict:
    """Entry point for ipyparallel: it pickles functions passed as top-level arguments by
    value (so notebook-defined functions work) but ones nested in an object by name."""
    spec.model_fn, spec.data_fn, spec.optimizer_fn = model_fn, data_fn, optimizer_fn
    return train_rank(ctx, spec)


def train_rank(ctx, spec: RankJob) -> dict:
    cfg = spec.config
    p = ctx.world_size
    local_batch = cfg.batch_size // p
    torch.manual_seed(cfg.seed + 1000 * ctx.rank)    # per-rank stream (dropout), reproducible
    X, Y = spec.data_fn()
    model = spec.model_fn().to(ctx.device)   # data stays on the CPU; batches move per step
    ddp = DistributedDataParallel(model, bucket_cap_mb=cfg.bucket_cap_mb,
                                  algorithm=cfg.algorithm, group=ctx.group, timeout=ctx.timeout)
    optimizer = spec.optimizer_fn(ddp.parameters())
    sampler = DistributedSampler(len(X), num_replicas=p, rank=ctx.rank, seed=cfg.seed)
    step = _restore(ctx, spec, ddp, optimizer, sampler) if spec.resume else 0
    batches = sampler.batches(local_batch)
    flops = peak = None
    if cfg.mfu:
        flops = training_flops(model, X[:1])
        peak, _ = peak_flops(ctx.device, next(model.parameters()).dtype)
    pub = None
    if spec.push_address:
        pub = LivePublisher(spec.push_address, spec.control_address, cfg.publish_interval)
    records, stopped, last_finite = [], False, None
    t_live = 0.0    # seconds this rank spent on the live stream (its whole overhead)
    loss_fn = functools.partial(loss_value, cfg.loss)
    try:
        while step < spec.steps:
            t0 = time.perf_counter()
            idx = next(batches, None)
            if idx is None:                       # epoch finished: next permutation
                sampler.set_epoch(sampler.epoch + 1)
                batches = sampler.batches(local_batch)
                idx = next(batches)
            t_data = time.perf_counter() - t0
            step += 1
            rec = train_step(ddp, optimizer, (X[idx], Y[idx]), loss_fn, step=step,
                             epoch=sampler.epoch, accumulation=cfg.accumulation,
                             last_finite=last_finite, group=ctx.group, rank=ctx.rank,
                             world_size=p, flops_per_sample=flops, peak_flops=peak)
            # backward's time includes DDP's wait for the last buckets: move it to t_comm
            rec.t_comm += ddp.last_exposed_comm
            rec.t_backward -= ddp.last_exposed_comm
            rec.t_step += t_data
            if peak is not None:
                rec.extra["mfu"] = mfu(rec.extra["model_flops"], rec.t_step, peak)
            last_finite = rec.loss
            records.append(rec)
            if pub is not None:
                tl = time.perf_counter()
                pub.add(rec)
                t_live += time.perf_counter() - tl
            if cfg.checkpoint_dir and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                _checkpoint(ctx, spec, ddp, optimizer, sampler, step)
            if step % cfg.stop_check_every == 0 or step == spec.steps:
                tl = time.perf_counter()
                stop = pub is not None and pub.stop_requested()
                t_live += time.perf_counter() - tl
                flag = torch.tensor([float(stop)])
                dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=ctx.group)
                if flag.item() > 0:
                    stopped = True
                    written = cfg.checkpoint_every and step % cfg.checkpoint_every == 0
                    if cfg.checkpoint_dir and not written:
                        _checkpoint(ctx, spec, ddp, optimizer, sampler, step)
                    break
    finally:
        if pub is not None:
            pub.close()
        ddp.close()
    out = {"records": [r.to_dict() for r in records], "step": step, "stopped": stopped,
           "t_live": t_live}
    if spec.return_params:
        out["params"] = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    return out


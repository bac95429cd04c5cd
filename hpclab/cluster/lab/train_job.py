"""The training script of the cluster lab: what a user starts with srun or torchrun.

    srun python -m hpclab.cluster.lab.train_job --steps 40 --ckpt ckpt/ --out final.pt
    torchrun --nnodes 2 --nproc-per-node 2 ... -m hpclab.cluster.lab.train_job ...

Every rank finds the rendezvous in its environment (rendezvous.from_env: torchrun's
variables, else Slurm's), joins torch.distributed and trains a small regression model
with hpclab's DistributedDataParallel: at step t rank r takes the t-th local batch of
B/p samples of its shard (DistributedSampler), so the p local batches together are the
t-th global batch of B samples, and the averaged gradient is the one-process gradient of
that batch:

    g_t = (1/p) Σ_r ∇J_r(θ_t) = ∇J(θ_t; global batch t)       θ_{t+1} = SGD(θ_t, g_t)

`single_process(steps, ...)` is the same training in one process, the reference.

Checkpoints (hpclab.parallel.checkpoint, atomic) every --ckpt-every steps, and when
SIGUSR1 or SIGTERM arrives: Slurm sends USR1 before the time limit (`--signal`), TERM when
it cancels or requeues a job. The ranks agree on stopping with one tiny all-reduce per
step (the signal reaches them at different steps), write the checkpoint and exit with
EXIT_RESUMABLE; a later run with the same --ckpt resumes from the latest checkpoint and
ends with the same parameters as a run never interrupted. Exit 0: all steps done, rank 0
wrote --out.

--step-seconds paces each step to at least that long: it stands in for a model big
enough that the run outlasts its time limit (the lab's job chain uses it).
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from hpclab.cluster import rendezvous
from hpclab.optim import SGD
from hpclab.parallel.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from hpclab.parallel.ddp import DistributedDataParallel
from hpclab.parallel.sampler import DistributedSampler
from hpclab.train import train_step

EXIT_RESUMABLE = 3        # stopped early on a signal, checkpoint written: run me again


@dataclass
class Config:
    steps: int = 40
    batch_size: int = 16          # global batch B, B/p per rank
    lr: float = 0.05
    momentum: float = 0.9
    samples: int = 256
    seed: int = 0


def make_model(cfg: Config) -> nn.Module:
    torch.manual_seed(cfg.seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))


def make_data(cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed + 1)
    x = torch.randn(cfg.samples, 8, generator=g)
    w = torch.randn(8, 1, generator=g)
    return x, torch.sin(x @ w) + 0.1 * torch.randn(cfg.samples, 1, generator=g)


def global_batches(sampler: DistributedSampler, local_batch: int):
    """Local batches epoch after epoch, from the sampler's current position."""
    while True:
        yield from sampler.batches(local_batch)
        sampler.set_epoch(sampler.epoch + 1)


def single_process(cfg: Config, optimizer_cls=torch.optim.SGD) -> dict[str, torch.Tensor]:
    """The reference: the same steps in one process, global batch B, torch's SGD."""
    model = make_model(cfg)
    x, y = make_data(cfg)
    opt = optimizer_cls(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    batches = global_batches(DistributedSampler(len(x), 1, 0, seed=cfg.seed),
                             cfg.batch_size)
    for step in range(1, cfg.steps + 1):
        idx = next(batches)
        train_step(model, opt, (x[idx], y[idx]), F.mse_loss, step=step)
    return model.state_dict()


class StopFlag:
    """Set by SIGUSR1 / SIGTERM; the training loop looks at it between steps."""

    def __init__(self):
        self.signal: str | None = None
        for sig in (signal.SIGUSR1, signal.SIGTERM):
            signal.signal(sig, self._handler)

    def _handler(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def ignore_more_warnings(self) -> None:
        """After the stop: Python restores a handled signal's default action (terminate)
        while it shuts down, so a repeated USR1 would kill the finished process."""
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def _save(ctx, ckpt: Path, step, model, opt, sampler) -> Path | None:
    rngs = [None] * ctx.world_size
    dist.all_gather_object(rngs, rng_state())
    if ctx.rank != 0:
        return None
    state = {"step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
             "sampler": sampler.state_dict(), "rng": rngs, "world_size": ctx.world_size}
    return save_checkpoint(checkpoint_path(ckpt, step), state, keep=2)


def _resume(ctx, ckpt: Path, model, opt, sampler) -> int:
    """Rank 0 reads the latest checkpoint and broadcasts it; the step to go on from."""
    box = [None]
    if ctx.rank == 0:
        path = latest_checkpoint(ckpt)
        box = [(path.name, load_checkpoint(path)) if path else None]
    dist.broadcast_object_list(box, src=0)
    if box[0] is None:
        return 0
    name, state = box[0]
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sampler.load_state_dict(state["sampler"])
    if state["world_size"] == ctx.world_size:
        set_rng_state(state["rng"][ctx.rank])
    ctx.print0(f"resumed from {name} at step {state['step']}")
    return state["step"]


def train(cfg: Config, ckpt: Path, ckpt_every: int, out: Path | None, step_seconds: float,
          timeout: float) -> int:
    stop = StopFlag()        # before the rendezvous: a signal may come at any time
    rdv = rendezvous.from_env()
    ctx = rdv.init_process_group(backend="gloo", timeout=timeout)
    ctx.log(f"host {socket.gethostname()} rank {ctx.rank} of {ctx.world_size} local_rank "
            f"{ctx.local_rank} node {ctx.node} via {rdv.launcher} master "
            f"{rdv.master_addr}:{rdv.master_port}")
    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"--batch {cfg.batch_size} must be divisible by the world size "
                         f"{ctx.world_size}")
    x, y = make_data(cfg)
    model = make_model(cfg)
    ddp = DistributedDataParallel(model, algorithm="torch", timeout=timeout)
    opt = SGD(ddp.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    sampler = DistributedSampler(len(x), ctx.world_size, ctx.rank, seed=cfg.seed)
    step = _resume(ctx, ckpt, model, opt, sampler)
    batches = global_batches(sampler, cfg.batch_size // ctx.world_size)
    code = 0
    try:
        while step < cfg.steps:
            t0 = time.monotonic()
            idx = next(batches)
            step += 1
            rec = train_step(ddp, opt, (x[idx], y[idx]), F.mse_loss, step=step,
                             group=None, rank=ctx.rank, world_size=ctx.world_size)
            if step % 10 == 0:
                ctx.print0(f"step {step} loss {rec.loss:.5f}")
            written = ckpt_every > 0 and step % ckpt_every == 0
            path = _save(ctx, ckpt, step, model, opt, sampler) if written else None
            # every rank stops at the same step if any one was signalled
            flag = torch.tensor([float(stop.signal is not None)])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item() > 0 and step < cfg.steps:
                if not written:
                    path = _save(ctx, ckpt, step, model, opt, sampler)
                ctx.log(f"stopping at step {step} of {cfg.steps} on "
                        f"{stop.signal or 'a peer signal'}")
                if path is not None:
                    ctx.log(f"checkpoint {path.name} written; run again to resume")
                stop.ignore_more_warnings()
                code = EXIT_RESUMABLE
                break
            time.sleep(max(0.0, step_seconds - (time.monotonic() - t0)))
        else:
            if out is not None and ctx.rank == 0:
                torch.save(model.state_dict(), out)
                ctx.log(f"finished {cfg.steps} steps, parameters in {out}")
    finally:
        ddp.close()
        dist.destroy_process_group()
    return code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hpclab.cluster.lab.train_job",
                                description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=Config.steps)
    p.add_argument("--batch", type=int, default=Config.batch_size, help="global batch B")
    p.add_argument("--lr", type=float, default=Config.lr)
    p.add_argument("--ckpt", type=Path, required=True, help="checkpoint folder (shared)")
    p.add_argument("--ckpt-every", type=int, default=10, help="steps between checkpoints")
    p.add_argument("--out", type=Path, default=None, help="final parameters (rank 0)")
    p.add_argument("--step-seconds", type=float, default=0.0,
                   help="pace each step to at least this long")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds any rendezvous or collective may wait")
    a = p.parse_args(argv)
    cfg = Config(steps=a.steps, batch_size=a.batch, lr=a.lr)
    return train(cfg, a.ckpt, a.ckpt_every, a.out, a.step_seconds, a.timeout)


if __name__ == "__main__":
    sys.exit(main())

"""Asynchronous SGD: a parameter server and workers that never wait for each other.

In synchronous data parallelism the slowest rank sets the pace. With a parameter server
(rank 0 holds θ) each worker repeatedly pulls θ, computes a gradient on its own data and
pushes it; the server applies every gradient the moment it arrives:

    θ_{t+1} = θ_t − η ∇J(θ_{t−τ})

The gradient was computed on parameters τ versions old (its *staleness*). Staleness grows
with the number of workers and makes convergence slower or unstable for large η·τ; a
bounded-staleness server (stale synchronous parallel) drops gradients with τ > τ_max.

Two things live here:
  `stale_sgd`     — the update rule above on one process, with a fixed τ: the clean
                    picture of the staleness/convergence trade-off for a lecture plot.
  `parameter_server_train` — the real thing over send/recv: rank 0 serves, ranks 1…p−1
                    work, the staleness of every applied update is recorded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn


def stale_sgd(grad_fn: Callable[[torch.Tensor], torch.Tensor], theta0: torch.Tensor,
              lr: float, steps: int, staleness: int) -> list[torch.Tensor]:
    """θ_{t+1} = θ_t − η g(θ_{t−τ}) with θ_{t−τ} = θ_0 for t < τ; returns θ_0 … θ_steps."""
    if staleness < 0:
        raise ValueError(f"staleness must be >= 0, got {staleness}")
    if lr < 0:
        raise ValueError(f"lr must be >= 0, got {lr}")
    thetas = [theta0.clone()]
    for t in range(steps):
        old = thetas[max(0, t - staleness)]
        thetas.append(thetas[-1] - lr * grad_fn(old))
    return thetas


def _flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _load_flat(model: nn.Module, flat: torch.Tensor) -> None:
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()


def _flat_grads(model: nn.Module) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in model.parameters()])


STOP = -1.0   # version number that tells a worker to finish


def parameter_server_train(ctx, model: nn.Module, batches, loss_fn, lr: float,
                           updates: int, max_staleness: int | None = None) -> dict:
    """Asynchronous SGD with rank 0 as parameter server; returns a summary on every rank.

    `batches` is this worker's iterable of (x, y) (ignored on rank 0), cycled as needed.
    Every message is [version, payload…] in the parameters' dtype: workers push
    [version they computed on, ∇J], the server answers [current version, θ].
    Rank 0's summary: applied, dropped (too stale) and unused (arrived after the last
    update) gradients, the staleness histogram, the final θ.
    """
    if ctx.world_size < 2:
        raise ValueError(f"a parameter server needs >= 2 ranks (1 server + workers), "
                         f"got world_size={ctx.world_size}")
    if updates < 1:
        raise ValueError(f"updates must be >= 1, got {updates}")
    theta = _flat_params(model)
    msg = torch.empty(theta.numel() + 1, dtype=theta.dtype)
    if ctx.rank == 0:
        return _serve(ctx, theta, msg, lr, updates, max_staleness)
    return _work(ctx, model, msg, batches, loss_fn)


def _serve(ctx, theta, msg, lr, updates, max_staleness) -> dict:
    version, applied, dropped, staleness = 0, 0, 0, Counter()
    reply = torch.empty_like(msg)
    for w in range(1, ctx.world_size):           # everyone starts from θ_0
        reply[0], reply[1:] = 0, theta
        dist.send(reply, w, group=ctx.group)
    stopped = 0
    while stopped < ctx.world_size - 1:
        src = dist.recv(msg, group=ctx.group)     # any worker: first come, first served
        if applied >= updates:                   # done: tell this worker to stop
            reply[0] = STOP
            dist.send(reply, src, group=ctx.group)
            stopped += 1
            continue
        tau = version - int(msg[0])
        if max_staleness is None or tau <= max_staleness:
            theta -= lr * msg[1:]
            version += 1
            applied += 1
            staleness[tau] += 1
        else:
            dropped += 1
        reply[0], reply[1:] = version, theta
        dist.send(reply, src, group=ctx.group)
    # the last push of every worker arrives after the target and is answered with STOP
    return {"rank": 0, "applied": applied, "dropped": dropped, "unused": stopped,
            "staleness": dict(sorted(staleness.items())), "theta": theta.clone()}


def _work(ctx, model, msg, batches, loss_fn) -> dict:
    pushes, losses = 0, []
    dist.recv(msg, 0, group=ctx.group)
    batches = list(batches)
    while msg[0] != STOP:
        _load_flat(model, msg[1:])
        x, y = batches[pushes % len(batches)]
        model.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        losses.append(float(loss))
        out = torch.cat([msg[:1], _flat_grads(model)])   # the version this gradient saw
        dist.send(out, 0, group=ctx.group)
        pushes += 1
        dist.recv(msg, 0, group=ctx.group)
    return {"rank": ctx.rank, "pushes": pushes, "losses": losses}

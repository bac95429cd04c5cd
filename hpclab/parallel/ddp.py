"""Our DistributedDataParallel: replicate the model, average gradients during backward.

Data parallelism on p ranks (lecture D1): rank r computes the gradient g_r of its own
shard of the global batch B (|shard| = B/p), then every rank applies the same update with

    ḡ = (1/p) · Σ_r g_r          (an all-reduce, then a division by p)

which equals the gradient of the whole batch, so p ranks follow the same trajectory as
one process with batch B.

    model = DistributedDataParallel(net, bucket_cap_mb=25, algorithm="auto")
    loss_fn(model(x), y).backward()     # gradients arrive already averaged
    optimizer.step()
    with model.no_sync():               # accumulate locally, reduce on the next backward
        loss_fn(model(x2), y2).backward()

How it works:
1. at construction rank 0's parameters and buffers are broadcast, so all replicas start
   equal;
2. gradients are packed into buckets (buckets.py); a post-accumulate-grad hook counts the
   ready gradients of each bucket and *launches* the bucket's all-reduce as soon as it is
   complete, while backward keeps computing the earlier layers (overlap);
3. at the end of backward a queued autograd callback waits for the buckets still in
   flight. Only this wait is *exposed* communication (`last_exposed_comm`, seconds).

Asynchrony, and why two mechanisms: torch.distributed's all-reduce has `async_op=True`
and returns a work handle, so algorithm="torch" launches that and waits on it later. Our
collectives (hpclab.comm: ring, tree, ...) are plain Python functions made of blocking
send/recv, so they run on one communication thread (comm_thread.py); a single thread
with a FIFO queue keeps the buckets in the same order on every rank (a collective must be
called in the same order everywhere), and gloo releases the GIL while it waits on
sockets, so backward continues in the meantime. A registered comm hook also runs there.

Comm hooks: `register_comm_hook(state, hook)` with `hook(state, flat_grad, group) ->
averaged flat_grad` replaces the averaging (e.g. compression with error feedback).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.autograd import Variable

from hpclab.parallel.buckets import Bucket, assign_buckets
from hpclab.parallel.comm_thread import CommThread

CommHook = Callable[[Any, torch.Tensor, Any], torch.Tensor]


def average_hook(algorithm: str, timeout: float | None = None, costs=None) -> CommHook:
    """The default hook: ḡ = all_reduce(g, op="avg") with one of our algorithms
    (algorithm="auto": picked per bucket from `costs`, hpclab.comm.calibrate's)."""
    def hook(state, flat_grad: torch.Tensor, group) -> torch.Tensor:
        if algorithm == "torch":
            dist.all_reduce(flat_grad, group=group)
            return flat_grad.div_(dist.get_world_size(group))
        import hpclab.comm
        hpclab.comm.all_reduce(flat_grad, op="avg", algorithm=algorithm, group=group,
                               timeout=timeout, costs=costs)
        return flat_grad
    hook.__name__ = f"average_{algorithm}"
    return hook


class DistributedDataParallel(nn.Module):
    """Wrap `module` so that backward averages its gradients over the process group."""

    def __init__(self, module: nn.Module, bucket_cap_mb: float = 25, algorithm: str = "auto",
                 group=None, timeout: float = 60.0):
        super().__init__()
        if not dist.is_initialized():
            raise RuntimeError("DistributedDataParallel needs a process group: run it on "
                               "engines (cluster.run) or in run_local, or call "
                               "dist.init_process_group first")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.module = module
        self.group = group
        self.algorithm = algorithm
        self.timeout = timeout
        self.world_size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self.require_grad_sync = True
        self.last_exposed_comm = 0.0   # seconds waited after backward, last synced step
        self.last_comm_total = 0.0     # seconds all buckets spent reducing (overlapped or not)
        self._hook_state: Any = None
        self.costs = self._check_algorithm(algorithm)   # measured costs, for "auto"
        self._hook: CommHook = average_hook(algorithm, timeout, self.costs)
        self._custom_hook = False
        self._broadcast_from_rank0()
        params = [p for p in module.parameters() if p.requires_grad]
        self.buckets: list[Bucket] = assign_buckets(params, bucket_cap_mb)
        self._bucket_of = {id(p): b for b in self.buckets for p in b.params}
        self._next_launch = 0
        self._in_backward = False
        self._works: dict[int, tuple[Any, torch.Tensor, float]] = {}
        self._thread: CommThread | None = None
        for p in params:
            p.register_post_accumulate_grad_hook(self._on_grad_ready)

    # -- set-up --------------------------------------------------------------------------
    def bucket_algorithms(self) -> list[str]:
        """The all-reduce algorithm each bucket uses (with "auto": the model's pick for the
        bucket's size; a registered comm hook decides for itself)."""
        if not self._communicates():
            return ["none"] * len(self.buckets)
        if self.algorithm != "auto":
            return [self.algorithm] * len(self.buckets)
        from hpclab.comm import best_algorithm
        return [best_algorithm(b.numel * b.params[0].element_size(), self.world_size,
                               self.costs) for b in self.buckets]

    def _check_algorithm(self, algorithm: str):
        if algorithm == "torch":
            return None
        from hpclab.comm import ALGORITHMS, calibrate
        known = ALGORITHMS["all_reduce"] + ("auto",)
        if algorithm not in known:
            raise ValueError(f"algorithm must be one of {list(known)}, got {algorithm!r}")
        if algorithm == "auto":   # measure the group now, not inside the first backward
            return calibrate(self.group, timeout=self.timeout)
        return None

    @torch.no_grad()
    def _broadcast_from_rank0(self) -> None:
        src = dist.get_global_rank(self.group, 0) if self.group is not None else 0
        for t in [*self.module.parameters(), *self.module.buffers()]:
            dist.broadcast(t.data, src=src, group=self.group)

    def register_comm_hook(self, state: Any, hook: CommHook) -> None:
        """Replace gradient averaging by `hook(state, flat_grad, group) -> flat_grad`.

        The hook receives one bucket's flat *local* gradient and must return the gradient
        averaged over the group, same shape and dtype (for example after compressing,
        all-reducing and decompressing it). It runs on the
        communication thread, once per bucket, in bucket order.
        """
        if not callable(hook):
            raise TypeError(f"hook must be callable, got {type(hook).__name__}")
        self._hook_state, self._hook, self._custom_hook = state, hook, True

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Inside this block backward only accumulates local gradients (no communication);
        the first backward after it reduces the accumulated sum."""
        previous, self.require_grad_sync = self.require_grad_sync, False
        try:
            yield
        finally:
            self.require_grad_sync = previous

    # -- during backward -----------------------------------------------------------------
    def _on_grad_ready(self, param: torch.Tensor) -> None:
        if not self.require_grad_sync:
            return
        if not self._communicates():
            return
        if not self._in_backward:
            self._in_backward = True
            self._next_launch = 0
            self._works.clear()
            for b in self.buckets:
                b.reset()
            Variable._execution_engine.queue_callback(self._finish_backward)
        bucket = self._bucket_of[id(param)]
        bucket.ready += 1
        # launch strictly in bucket order so every rank issues the same collective sequence
        while (self._next_launch < len(self.buckets)
               and self.buckets[self._next_launch].ready == len(self.buckets[self._next_launch].params)):
            self._launch(self.buckets[self._next_launch])
            self._next_launch += 1

    def _communicates(self) -> bool:
        """False on one rank without a comm hook: the average over one rank is its own
        gradient, so there is nothing to pack or send."""
        return self.world_size > 1 or self._custom_hook

    def _use_thread(self) -> bool:
        return self._custom_hook or self.algorithm != "torch"

    def _launch(self, bucket: Bucket) -> None:
        bucket.launched = True
        flat = bucket.flatten_grads()
        if self._use_thread():
            if self._thread is None:
                self._thread = CommThread(name=f"hpclab-ddp-comm-rank{self.rank}")
            self._thread.submit(bucket, lambda f=flat: self._hook(self._hook_state, f, self.group))
        else:
            work = dist.all_reduce(flat, group=self.group, async_op=True)
            self._works[bucket.index] = (work, flat, time.perf_counter())

    def _finish_backward(self) -> None:
        """Queued at the first hook; runs when autograd has finished this backward."""
        self._in_backward = False
        for b in self.buckets[self._next_launch:]:   # unused parameters: reduce zeros
            self._launch(b)
        self._next_launch = len(self.buckets)
        t0 = time.perf_counter()
        for b in self.buckets:
            if self._use_thread():
                flat = self._thread.result(b, timeout=self.timeout, where=self._where())
            else:
                work, flat, t_launch = self._works[b.index]
                try:
                    work.wait(timedelta(seconds=self.timeout))
                except RuntimeError as exc:
                    raise RuntimeError(f"gradient all-reduce of bucket {b.index} failed on "
                                       f"{self._where()}: {exc}. A peer rank probably died; "
                                       "restart the engines and resume from the last "
                                       "checkpoint") from exc
                flat.div_(self.world_size)
                b.comm_seconds = time.perf_counter() - t_launch
            b.unflatten_grads(flat)
        self.last_exposed_comm = time.perf_counter() - t0
        self.last_comm_total = sum(b.comm_seconds for b in self.buckets)

    def _where(self) -> str:
        return f"rank {self.rank} on host {socket.gethostname()}"

    def close(self) -> None:
        """Stop the communication thread (also done when the object is collected)."""
        if self._thread is not None:
            self._thread.close()
            self._thread = None

    def __del__(self):  # pragma: no cover - best effort at interpreter shutdown too
        with contextlib.suppress(Exception):
            self.close()

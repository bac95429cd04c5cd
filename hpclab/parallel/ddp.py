"""Our DistributedDataParallel: replicate the model, average gradients in buckets during backward.

Data parallelism on p ranks (lecture D1): rank r computes the gradient g_r of its own
shard of the global batch B (|shard| = B/p), then every rank applies the same update with

    ḡ = (1/p) · Σ_r g_r          (an all-reduce, then a division by p)

which equals the gradient of the whole batch, so p ranks follow the same trajectory as
one process with batch B. naive_dp.py does this with one blocking all-reduce per
parameter; this wrapper does it with a few buckets, reduced while backward goes on.

    model = DistributedDataParallel(net, bucket_cap_mb=25, algorithm="auto")
    loss_fn(model(x), y).backward()     # gradients arrive already averaged
    optimizer.step()
    with model.no_sync():               # accumulate locally, reduce on the next backward
        loss_fn(model(x2), y2).backward()

How it works:
1. at construction rank 0's parameters and buffers are broadcast, so all replicas start
   equal, and the parameters are packed into buckets of about `bucket_cap_mb` MiB
   (buckets.py);
2. a post-accumulate-grad hook counts the ready gradients of each bucket; once a bucket
   is complete (and all buckets before it), its gradients are copied into one flat
   buffer and its reduction is *submitted* to a single communication thread, while
   backward keeps computing the earlier layers (overlap);
3. at the end of backward a queued autograd callback waits for the buckets still in
   flight and copies the averages back into p.grad. Only this wait is *exposed*
   communication (`last_exposed_comm`, seconds).

One launch path for every algorithm: the thread is a
`concurrent.futures.ThreadPoolExecutor(max_workers=1)`. One worker runs the buckets in
submission order, which is the same order on every rank — a collective must be called in
the same order everywhere — and gloo releases the GIL while it waits on sockets, so
backward continues meanwhile. `algorithm` is any all-reduce of hpclab.comm ("ring",
"tree", ..., "torch" for gloo's or NCCL's own), or "auto": per bucket, the one the cost
model predicts fastest for the bucket's size, priced with this group's costs measured at
construction (`ddp.costs = hpclab.comm.calibrate(group)`).

Comm hooks, as torch's DDP has them: `register_comm_hook(state, hook)` with
`hook(state, bucket) -> averaged flat gradient` replaces the averaging (e.g. compression
with error feedback, compression.py). The bucket is a buckets.GradBucket: `index()`,
`buffer()`, `parameters()`, `gradients()`, `is_last()`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.autograd import Variable

import hpclab.comm
from hpclab.parallel.buckets import GradBucket, assign_buckets

CommHook = Callable[[Any, GradBucket], torch.Tensor]


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
        known = hpclab.comm.ALGORITHMS["all_reduce"] + ("auto",)
        if algorithm not in known:
            raise ValueError(f"algorithm must be one of {list(known)}, got {algorithm!r}")
        self.module = module
        self.group = group
        self.algorithm = algorithm
        self.timeout = timeout
        self.world_size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self.require_grad_sync = True
        self.last_exposed_comm = 0.0   # seconds waited after backward, last synced step
        self.last_comm_total = 0.0     # seconds all buckets spent reducing (overlapped or not)
        self._broadcast_from_rank0()
        params = [p for p in module.parameters() if p.requires_grad]
        self.buckets: list[GradBucket] = assign_buckets(params, bucket_cap_mb)
        self._bucket_of = {id(p): b for b in self.buckets for p in b.parameters()}
        # measured for "auto" (TwoLevel on several nodes: then "hierarchical" is a choice)
        self.costs: hpclab.comm.MeasuredCosts | hpclab.comm.TwoLevel | None = None
        self._algorithms = self._bucket_algorithms()
        self._hook_state: Any = None
        self._hook: CommHook = self._average
        self._custom_hook = False
        self._next_launch = 0
        self._in_backward = False
        self._futures: dict[int, concurrent.futures.Future] = {}
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        for p in params:
            p.register_post_accumulate_grad_hook(self._on_grad_ready)

    # -- set-up --------------------------------------------------------------------------
    def _bucket_algorithms(self) -> list[str]:
        """Each bucket's all-reduce algorithm. With "auto", the cost model's pick for the
        bucket's size, from this group's message costs measured here (a collective call:
        every rank constructs its DDP at the same point, not inside the first backward)."""
        if self.algorithm != "auto":
            return [self.algorithm] * len(self.buckets)
        self.costs = hpclab.comm.calibrate(self.group, timeout=self.timeout)
        return [hpclab.comm.best_algorithm(b.nbytes, self.world_size, self.costs)
                for b in self.buckets]

    def bucket_algorithms(self) -> list[str]:
        """The all-reduce algorithm each bucket uses ("none" where nothing is sent; a
        registered comm hook decides for itself)."""
        if not self._communicates():
            return ["none"] * len(self.buckets)
        return list(self._algorithms)

    @torch.no_grad()
    def _broadcast_from_rank0(self) -> None:
        src = dist.get_global_rank(self.group, 0) if self.group is not None else 0
        for t in [*self.module.parameters(), *self.module.buffers()]:
            dist.broadcast(t.data, src=src, group=self.group)

    def register_comm_hook(self, state: Any, hook: CommHook) -> None:
        """Replace gradient averaging by `hook(state, bucket) -> averaged flat gradient`.

        `bucket.buffer()` is the bucket's flat *local* gradient; the hook returns the
        gradient averaged over `self.group`, same shape and dtype (for example after
        compressing, all-reducing and decompressing it). It runs on the communication
        thread, once per bucket, in bucket order; `bucket.index()` tells the buckets apart.
        """
        if not callable(hook):
            raise TypeError(f"hook must be callable, got {type(hook).__name__}")
        self._hook_state, self._hook, self._custom_hook = state, hook, True

    def _average(self, state: Any, bucket: GradBucket) -> torch.Tensor:
        """The default hook: ḡ = all_reduce(g, op="avg") with the bucket's algorithm."""
        return hpclab.comm.all_reduce(bucket.buffer(), op="avg",
                                      algorithm=self._algorithms[bucket.index()],
                                      group=self.group, timeout=self.timeout, costs=self.costs)

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
        if not self.require_grad_sync or not self._communicates():
            return
        if not self._in_backward:
            self._in_backward = True
            self._next_launch = 0
            for b in self.buckets:
                b.ready = 0
            Variable._execution_engine.queue_callback(self._finish_backward)
        self._bucket_of[id(param)].ready += 1
        # launch strictly in bucket order so every rank issues the same collective sequence
        while (self._next_launch < len(self.buckets)
               and self.buckets[self._next_launch].complete()):
            self._launch(self.buckets[self._next_launch])
            self._next_launch += 1

    def _communicates(self) -> bool:
        """False on one rank without a comm hook: the average over one rank is its own
        gradient, so there is nothing to pack or send."""
        return self.world_size > 1 or self._custom_hook

    def _launch(self, bucket: GradBucket) -> None:
        bucket.flatten_grads()
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"hpclab-ddp-comm-rank{self.rank}")
        self._futures[bucket.index()] = self._executor.submit(self._reduce, bucket)

    def _reduce(self, bucket: GradBucket) -> torch.Tensor:
        """Runs on the communication thread."""
        t0 = time.perf_counter()
        try:
            return self._hook(self._hook_state, bucket)
        finally:
            bucket.comm_seconds = time.perf_counter() - t0

    def _finish_backward(self) -> None:
        """Queued at the first hook; runs when autograd has finished this backward."""
        self._in_backward = False
        for b in self.buckets[self._next_launch:]:   # unused parameters: reduce zeros
            self._launch(b)
        self._next_launch = len(self.buckets)
        t0 = time.perf_counter()
        for b in self.buckets:
            b.unflatten_grads(self._wait(b, self._futures.pop(b.index())))
        self.last_exposed_comm = time.perf_counter() - t0
        self.last_comm_total = sum(b.comm_seconds for b in self.buckets)

    def _wait(self, bucket: GradBucket, future: concurrent.futures.Future) -> torch.Tensor:
        try:
            return future.result(timeout=self.timeout)
        except Exception as exc:
            if not future.done():
                raise TimeoutError(f"gradient all-reduce of bucket {bucket.index()} did not "
                                   f"finish within {self.timeout} s on {self._where()}; a "
                                   "peer rank may have died or be stuck: restart the engines "
                                   "and resume from the last checkpoint") from None
            raise RuntimeError(f"gradient all-reduce of bucket {bucket.index()} failed on "
                               f"{self._where()}: {exc}. A peer rank probably died; restart "
                               "the engines and resume from the last checkpoint") from exc

    def _where(self) -> str:
        return f"rank {self.rank} on host {socket.gethostname()}"

    def close(self) -> None:
        """Stop the communication thread (also done when the object is collected)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def __del__(self):  # pragma: no cover - best effort at interpreter shutdown too
        with contextlib.suppress(Exception):
            self.close()

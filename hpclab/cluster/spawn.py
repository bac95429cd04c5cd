"""Run a function on p real processes of this machine, joined in a torch.distributed group.

The quickest way to try a collective without a cluster, and what the tests use when they
need many world sizes quickly (ipyparallel engines are the notebook's way; see connect).

    from hpclab.cluster.spawn import run_local

    def total(ctx, x):
        t = torch.tensor([x * (ctx.rank + 1.0)])
        dist.all_reduce(t)
        return t.item()

    run_local(total, 3, 1.0)   # -> [6.0, 6.0, 6.0]

Processes are forked (start-up in milliseconds rather than the seconds a fresh `import torch`
costs) and joined in a gloo group on 127.0.0.1 with a free port. `fn` must be picklable
only for its return value. A rank that raises, dies or outlives `timeout` makes run_local
raise an error naming the rank; the other processes are killed, so nothing hangs.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import socket
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch._dynamo  # torch.optim imports it on first use (seconds): once here, inherited
import torch.distributed as dist

from hpclab.cluster.context import DistContext


class SpawnError(RuntimeError):
    """A spawned rank failed, died or timed out; the message names the rank."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _worker(fn, rank, world_size, port, timeout, args, kwargs, results):
    # One compute thread per rank: the ranks share this machine's cores, and an OpenMP
    # thread pool inherited through fork hangs at its first parallel region (a parent that
    # already trained with several threads, e.g. a notebook kernel, leaves one behind).
    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world_size, timeout=timedelta(seconds=timeout))
        # nobody starts before everyone has connected: a rank whose fn sends nothing (an
        # empty shard) would otherwise exit while a slower rank is still connecting its
        # gloo mesh, and that rank fails with "Connection closed by peer"
        dist.barrier()
    except BaseException as exc:  # noqa: BLE001 - the parent decides whether to retry
        results.put((rank, "rendezvous", f"{type(exc).__name__}: {exc}"))
        return
    try:
        ctx = DistContext(rank=rank, world_size=world_size, local_rank=rank,
                          backend="gloo", timeout=timeout)
        try:
            # plain pickle, not multiprocessing's: torch would otherwise pass tensors as
            # shared-memory handles that vanish when this process exits
            results.put((rank, "ok", pickle.dumps(fn(ctx, *args, **kwargs))))
        finally:
            dist.destroy_process_group()
    except BaseException as exc:  # noqa: BLE001 - report everything, KeyboardInterrupt too
        results.put((rank, "error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


class _RendezvousFailed(Exception):
    """Joining the group failed before fn ran (e.g. the free port was taken meanwhile)."""


RENDEZVOUS_ATTEMPTS = 3


def run_local(fn: Callable[..., Any], world_size: int, *args, timeout: float = 60.0,
              **kwargs) -> list:
    """Call `fn(ctx, *args, **kwargs)` on `world_size` forked processes; results by rank."""
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    for attempt in range(1, RENDEZVOUS_ATTEMPTS + 1):
        try:
            return _run_once(fn, world_size, args, kwargs, timeout)
        except _RendezvousFailed as exc:
            # a port that was free when picked can be taken before rank 0 binds it, and a
            # connection can drop while the mesh forms: nothing of fn has run, so retry
            if attempt == RENDEZVOUS_ATTEMPTS:
                raise SpawnError(f"{world_size} local ranks on {socket.gethostname()} could "
                                 f"not form a gloo group in {attempt} attempts (a fresh free "
                                 f"port each time): {exc}") from exc
    raise AssertionError("unreachable")


def _run_once(fn, world_size: int, args, kwargs, timeout: float) -> list:
    mpctx = mp.get_context("fork")
    results = mpctx.Queue()
    port = free_port()
    procs = [mpctx.Process(target=_worker, daemon=True,
                           args=(fn, r, world_size, port, timeout, args, kwargs, results))
             for r in range(world_size)]
    for p in procs:
        p.start()
    out: dict[int, Any] = {}
    try:
        import queue
        import time
        deadline = time.monotonic() + timeout + 10  # grace for gloo's own timeout to fire
        while len(out) < world_size:
            try:
                rank, status, value = results.get(timeout=0.2)
            except queue.Empty:
                dead = [r for r, p in enumerate(procs)
                        if not p.is_alive() and p.exitcode not in (0, None) and r not in out]
                if dead:
                    raise SpawnError(f"rank {dead[0]} on {socket.gethostname()} died "
                                     f"(exit code {procs[dead[0]].exitcode}) before returning")
                if time.monotonic() > deadline:
                    missing = sorted(set(range(world_size)) - set(out))
                    raise SpawnError(f"ranks {missing} on {socket.gethostname()} did not finish "
                                     f"within {timeout} s; a rank may be waiting for a message "
                                     "that was never sent")
                continue
            if status == "rendezvous":
                raise _RendezvousFailed(f"rank {rank}: {value}")
            if status == "error":
                # a rank that died takes its peers' connections with it: name it as the
                # cause rather than the peer that noticed first
                time.sleep(0.5)
                dead = [r for r, p in enumerate(procs)
                        if r != rank and not p.is_alive() and p.exitcode not in (0, None)]
                cause = (f"rank {dead[0]} on {socket.gethostname()} died (exit code "
                         f"{procs[dead[0]].exitcode}); then " if dead else "")
                raise SpawnError(f"{cause}rank {rank} on {socket.gethostname()} failed: {value}")
            out[rank] = pickle.loads(value)
    finally:
        for p in procs:
            p.join(timeout=2)
            if p.is_alive():
                p.kill()
                p.join()
    return [out[r] for r in range(world_size)]

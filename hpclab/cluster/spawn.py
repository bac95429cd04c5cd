"""Run a function on p real processes of this machine, joined in a torch.distributed group.

The quickest way to try a collective without a cluster, and what the tests use when they
need many world sizes quickly (ipyparallel engines are the notebook's way; see connect).

    from hpclab.cluster.spawn import run_local

    def total(ctx, x):
        t = torch.tensor([x * (ctx.rank + 1.0)])
        dist.all_reduce(t)
        return t.item()

    run_local(total, 3, 1.0)   # -> [6.0, 6.0, 6.0]

The processes are started by `torch.multiprocessing.start_processes` with fork (start-up in
milliseconds rather than the seconds a fresh `import torch` costs) and joined in a gloo
group on 127.0.0.1. The rendezvous port is bound by this process before the ranks start
and handed to rank 0's TCPStore as a listening socket, so no other process can take it in
between. `fn` must be picklable only for its return value. A rank that raises, dies or
outlives `timeout` makes run_local raise a `SpawnError` naming the rank; the other
processes are stopped, so nothing hangs.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch._dynamo  # torch.optim imports it on first use (seconds): once here, inherited
import torch.distributed as dist
import torch.multiprocessing as tmp

from hpclab.cluster.context import DistContext

RENDEZVOUS_ATTEMPTS = 3
_JOIN_GRACE_S = 10.0     # past `timeout`: time for gloo's own timeout to fire and be reported


class SpawnError(RuntimeError):
    """A spawned rank failed, died or timed out; the message names the rank."""


class _RendezvousFailed(Exception):
    """Joining the group failed before fn ran (a connection dropped while the mesh formed)."""


def _listening_socket() -> socket.socket:
    """A socket bound to a port of 127.0.0.1 the kernel picked, already listening."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def _report(folder: str, rank: int, outcome: tuple) -> None:
    # a file per rank, as torch.multiprocessing reports tracebacks: a queue would block a
    # rank that returns a large result until the parent reads it. Written aside and renamed:
    # a rank SIGTERMed while it writes (its peer died) leaves no half-written report.
    path = Path(folder, f"rank{rank}.pickle")
    partial = path.with_suffix(".partial")
    partial.write_bytes(pickle.dumps(outcome))
    os.replace(partial, path)


def _worker(rank, fn, world_size, listen_fd, port, timeout, args, kwargs, folder, k):
    # One compute thread per rank: the ranks share this machine's cores, and an OpenMP
    # thread pool inherited through fork hangs at its first parallel region (a parent that
    # already trained with several threads, e.g. a notebook kernel, leaves one behind).
    torch.set_num_threads(1)
    # the topology as torchrun states it (the hierarchical collectives read it)
    os.environ.update(LOCAL_RANK=str(rank % k), LOCAL_WORLD_SIZE=str(k),
                      GROUP_RANK=str(rank // k))
    try:
        wait = timedelta(seconds=timeout)
        if rank == 0:
            store = dist.TCPStore("127.0.0.1", port, world_size, is_master=True, timeout=wait,
                                  wait_for_workers=False, master_listen_fd=listen_fd)
        else:
            os.close(listen_fd)
            store = dist.TCPStore("127.0.0.1", port, world_size, is_master=False, timeout=wait)
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size,
                                timeout=wait)
        # nobody starts before everyone has connected: a rank whose fn sends nothing (an
        # empty shard) would otherwise exit while a slower rank is still connecting its
        # gloo mesh, and that rank fails with "Connection closed by peer"
        dist.barrier()
    except BaseException as exc:   # the parent decides whether to retry
        _report(folder, rank, ("rendezvous", f"{type(exc).__name__}: {exc}"))
        raise
    try:
        ctx = DistContext(rank=rank, world_size=world_size, local_rank=rank % k,
                          backend="gloo", timeout=timeout, node=rank // k, ranks_per_node=k)
        try:
            # plain pickle, not multiprocessing's: torch would otherwise pass tensors as
            # shared-memory handles that vanish when this process exits
            _report(folder, rank, ("ok", fn(ctx, *args, **kwargs)))
        finally:
            dist.destroy_process_group()
    except BaseException as exc:   # report everything, KeyboardInterrupt too
        _report(folder, rank, ("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        raise


def run_local(fn: Callable[..., Any], world_size: int, *args, timeout: float = 60.0,
              ranks_per_node: int | None = None, **kwargs) -> list:
    """Call `fn(ctx, *args, **kwargs)` on `world_size` forked processes; results by rank.

    `ranks_per_node=k` numbers the ranks as world_size/k "nodes" of k ranks each (ctx.node,
    ctx.local_rank; default: one node of all ranks), to try topology-aware collectives."""
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    k = world_size if ranks_per_node is None else ranks_per_node
    if not isinstance(k, int) or k < 1 or world_size % k:
        raise ValueError(f"ranks_per_node must be a positive int dividing world_size="
                         f"{world_size}, got {ranks_per_node!r}")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    for attempt in range(1, RENDEZVOUS_ATTEMPTS + 1):
        try:
            return _run_once(fn, world_size, args, kwargs, timeout, k)
        except _RendezvousFailed as exc:
            # a connection can drop while the mesh forms: nothing of fn has run, so retry
            if attempt == RENDEZVOUS_ATTEMPTS:
                raise SpawnError(f"{world_size} local ranks on {socket.gethostname()} could "
                                 f"not form a gloo group in {attempt} attempts (a fresh port "
                                 f"each time): {exc}") from exc
    raise AssertionError("unreachable")


def _run_once(fn, world_size: int, args, kwargs, timeout: float, k: int) -> list:
    host = socket.gethostname()
    with tempfile.TemporaryDirectory(prefix="hpclab-run-local-") as folder, \
            _listening_socket() as sock:
        port = sock.getsockname()[1]
        procs = tmp.start_processes(
            _worker, args=(fn, world_size, sock.fileno(), port, timeout, args, kwargs, folder, k),
            nprocs=world_size, join=False, daemon=True, start_method="fork")
        sock.close()   # rank 0 holds its own copy of the listening socket
        deadline = time.monotonic() + timeout + _JOIN_GRACE_S
        first = None   # the rank torch.multiprocessing saw fail first
        try:
            while not procs.join(timeout=max(0.0, deadline - time.monotonic())):
                if time.monotonic() >= deadline:
                    missing = [r for r, p in enumerate(procs.processes) if p.is_alive()]
                    raise SpawnError(f"ranks {missing} on {host} did not finish within "
                                     f"{timeout} s; a rank may be waiting for a message "
                                     "that was never sent")
        except (tmp.ProcessRaisedException, tmp.ProcessExitedException) as exc:
            # join() has SIGTERMed the other ranks
            first = exc.error_index
        finally:
            for p in procs.processes:
                if p.is_alive():
                    p.kill()
                p.join()
            for path in procs.error_files:   # torch's traceback files of failed ranks
                Path(path).unlink(missing_ok=True)
        outcomes = {}
        for r in range(world_size):
            path = Path(folder, f"rank{r}.pickle")
            if path.exists():
                outcomes[r] = pickle.loads(path.read_bytes())
    return _explain(outcomes, [p.exitcode for p in procs.processes], first, host)


def _explain(outcomes: dict[int, tuple], codes: list[int], first: int | None,
             host: str) -> list:
    """The results by rank, or the error that names the rank to blame.

    A rank that died (no report; an exit code other than 0 and join()'s SIGTERM) takes its
    peers' connections with it: it is named as the cause rather than the peer that noticed
    first.
    """
    dead = [r for r, code in enumerate(codes) if r not in outcomes
            and (r == first or code not in (0, None, -signal.SIGTERM))]
    failed = [r for r, o in sorted(outcomes.items()) if o[0] != "ok"]
    if failed and not dead and all(outcomes[r][0] == "rendezvous" for r in failed):
        raise _RendezvousFailed(f"rank {failed[0]}: {outcomes[failed[0]][1]}")
    if failed:
        r = first if first in failed else failed[0]
        failure = f"rank {r} on {host} failed: {outcomes[r][1]}"
    if dead:
        cause = f"rank {dead[0]} on {host} died (exit code {codes[dead[0]]})"
        raise SpawnError(f"{cause}; then {failure}" if failed else f"{cause} before returning")
    if failed:
        raise SpawnError(failure)
    missing = [r for r in range(len(codes)) if r not in outcomes]
    if missing:
        raise SpawnError(f"rank {missing[0]} on {host} exited (exit code {codes[missing[0]]}) "
                         "without returning")
    return [outcomes[r][1] for r in range(len(codes))]

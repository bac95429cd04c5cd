"""What runs *on each engine*: describe the process, join the process group, call fn(ctx).

`connect()` ships these functions to the engines (by reference: engines import hpclab from
the same environment), each as one ipyparallel call over all engines in rank order:

    describe()                      -> host, outward IP, pid, CPUs, memory, GPUs, versions
    open_store(addr, p, timeout)    -> rank 0 only: a torch.distributed TCPStore listening
                                       on a port the kernel picked (port 0), and that port
    join_group(plan, p, addr, port, backend, timeout, set_ifname)
                                    -> torch.distributed.init_process_group on every rank,
                                       then stores the DistContext as `hpclab_ctx` in the
                                       engine's namespace (so `%%px` cells can use it too)

`call(fn, ctx, args, kwargs)` is what `cluster.run(fn, ...)` executes on each engine.
The rendezvous address is rank 0's outward IP, never 127.0.0.1, so engines on several
nodes can meet. Rank 0 binds its port itself and keeps it bound until the group has
formed, so no other process can take the port in between.

Engines that `connect()` starts run `PRELOAD` at start-up: it imports this module (and so
torch, seconds of work) in a background thread while the engine registers with the
controller, which takes seconds of waiting for the controller's heartbeat anyway.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from datetime import timedelta

import psutil
import torch
import torch.distributed as dist
from ipyparallel import serialize
from IPython import get_ipython

from hpclab.cluster.context import DistContext
from hpclab.cluster.net import interface_of, outward_ip

CTX_NAME = "hpclab_ctx"       # name of the DistContext in each engine's namespace
STORE_NAME = "hpclab_store"   # rank 0's TCPStore between open_store and join_group

# IPEngine.startup_command: one line, no spaces (it passes through srun/mpiexec command
# lines), leaving no names behind in the engine's namespace.
PRELOAD = ("__import__('threading').Thread(target=__import__,args=('hpclab.cluster.engine',),"
           "daemon=True).start()")


def describe() -> dict:
    """Facts about this engine's process and node; cheap, no process group needed.

    Also switches this engine's serialisation to cloudpickle, as the client's: a notebook
    function then arrives with the modules it uses (torch, dist ...); plain pickle would
    look them up in the engine's empty namespace.
    """
    serialize.use_cloudpickle()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    vm = psutil.virtual_memory()
    return {
        "host": socket.gethostname(),
        "ip": outward_ip(),
        "pid": os.getpid(),
        # CPUs this process may run on (a Slurm job or taskset can allow fewer than the node has)
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "mem_total_gb": vm.total / 2**30,
        "gpus": gpus,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def open_store(addr: str, world_size: int, timeout: float) -> int:
    """Rank 0: listen for the group's rendezvous on a port the kernel picks; that port."""
    leave_group()
    store = dist.TCPStore(addr, 0, world_size, is_master=True,
                          timeout=timedelta(seconds=timeout), wait_for_workers=False)
    get_ipython().user_ns[STORE_NAME] = store
    return store.port


def join_group(plan: dict[int, tuple[int, int, int]], world_size: int, addr: str, port: int,
               backend: str, timeout: float, set_ifname: bool = False) -> dict:
    """Join the torch.distributed group and store the DistContext in the engine namespace.

    `plan` maps engine id -> (rank, local_rank, threads, node, ranks_per_node), the same
    table for every engine (ranks_per_node 0: the nodes have different numbers of ranks).
    `threads`: torch's intra-op threads for this engine, the host's CPUs shared among its
    engines. Left at torch's default (all CPUs), p engines on one node run p × CPUs
    threads on CPUs cores and spin against each other.
    """
    shell = get_ipython()
    rank, local_rank, threads, node, ranks_per_node = plan[shell.kernel.engine_id]
    store = shell.user_ns.pop(STORE_NAME, None) if rank == 0 else None
    leave_group()
    torch.set_num_threads(threads)
    if set_ifname and "GLOO_SOCKET_IFNAME" not in os.environ:
        # gloo otherwise binds to the address the hostname resolves to, often 127.0.1.1
        ifname = interface_of(outward_ip())
        if ifname:
            os.environ["GLOO_SOCKET_IFNAME"] = ifname
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = torch.device(f"cuda:{local_rank}")
    else:
        device = torch.device("cpu")
    t0 = time.perf_counter()
    if store is None:
        store = dist.TCPStore(addr, port, world_size, is_master=False,
                              timeout=timedelta(seconds=timeout))
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout))
    ctx = DistContext(rank=rank, world_size=world_size, local_rank=local_rank,
                      device=device, backend=backend, timeout=timeout, node=node,
                      ranks_per_node=ranks_per_node)
    # Environment variables as torchrun sets them, so code written for torchrun works here.
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(local_rank),
                      LOCAL_WORLD_SIZE=str(ranks_per_node or world_size), GROUP_RANK=str(node),
                      MASTER_ADDR=addr, MASTER_PORT=str(port))
    shell.user_ns[CTX_NAME] = ctx
    return {"rank": rank, "device": str(device), "join_s": time.perf_counter() - t0}


def leave_group() -> bool:
    """Destroy this engine's process group (and a store not yet used), if any; True when
    there was a group."""
    get_ipython().user_ns.pop(CTX_NAME, None)
    get_ipython().user_ns.pop(STORE_NAME, None)
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        return True
    return False


def status() -> dict:
    """Live figures for cluster.info(): this process's memory and the node's load."""
    proc = psutil.Process()
    out = {"rss_gb": proc.memory_info().rss / 2**30,
           "mem_used_pct": psutil.virtual_memory().percent}
    if torch.cuda.is_available():
        out["gpu_mem_gb"] = torch.cuda.memory_allocated() / 2**30
    return out


def call(fn, ctx, args, kwargs):
    """Run one SPMD step: fn(ctx, *args, **kwargs) on this engine."""
    if ctx is None:
        raise RuntimeError("this engine has no process group: reconnect with hpclab.connect()")
    return fn(ctx, *args, **kwargs)

"""What runs *on each engine*: describe the process, join the process group, call fn(ctx).

`connect()` ships these functions to the engines (by reference: engines import hpclab from
the same environment) in three steps:

    describe()                      -> host, outward IP, pid, CPUs, memory, GPUs, versions
    rendezvous_port(ip)             -> a free TCP port on rank 0's outward IP
    join_group(rank, p, local_rank, addr, port, backend, timeout, ..., threads)
                                    -> torch.distributed.init_process_group on every rank,
                                       then stores the DistContext as `hpclab_ctx` in the
                                       engine's namespace (so `%%px` cells can use it too)

`call(fn, ctx, args, kwargs)` is what `cluster.run(fn, ...)` executes on each engine.
The rendezvous address is rank 0's outward IP, never 127.0.0.1, so engines on several
nodes can meet; the port is picked free by rank 0 itself.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta

CTX_NAME = "hpclab_ctx"   # name of the DistContext in each engine's namespace


def outward_ip() -> str:
    """The IP other hosts reach this one on (the interface of the default route).

    Connecting a UDP socket sends nothing; it only asks the kernel which source address it
    would use. Falls back to the hostname's address, then to loopback (single machine).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
        except OSError:
            pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def interface_of(ip: str) -> str | None:
    """Network interface name (eth0, ib0 ...) holding `ip`, for GLOO_SOCKET_IFNAME."""
    import psutil
    for name, addrs in psutil.net_if_addrs().items():
        if any(a.address == ip for a in addrs):
            return name
    return None


def describe() -> dict:
    """Facts about this engine's process and node; cheap, no process group needed."""
    import platform

    import psutil
    import torch
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


def rendezvous_port(ip: str) -> int:
    """A free port on `ip`, picked by the rank that will listen on it (rank 0)."""
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def join_group(rank: int, world_size: int, local_rank: int, addr: str, port: int,
               backend: str, timeout: float, set_ifname: bool = False,
               threads: int | None = None) -> dict:
    """Join the torch.distributed group and store the DistContext in the engine namespace.

    `threads`: torch's intra-op threads for this engine, the host's CPUs shared among its
    engines. Left at torch's default (all CPUs), p engines on one node run p × CPUs
    threads on CPUs cores and spin against each other (measured here: our ring all-reduce
    1.5× slower, gloo's 1.3×).
    """
    import torch
    import torch.distributed as dist
    from IPython import get_ipython

    from hpclab.cluster.context import DistContext

    leave_group()
    if threads:
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
    dist.init_process_group(backend, init_method=f"tcp://{addr}:{port}", rank=rank,
                            world_size=world_size, timeout=timedelta(seconds=timeout))
    ctx = DistContext(rank=rank, world_size=world_size, local_rank=local_rank,
                      device=device, backend=backend, timeout=timeout)
    # Environment variables as torchrun sets them, so code written for torchrun works here.
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(local_rank),
                      MASTER_ADDR=addr, MASTER_PORT=str(port))
    get_ipython().user_ns[CTX_NAME] = ctx
    return {"rank": rank, "device": str(device), "join_s": time.perf_counter() - t0}


def leave_group() -> bool:
    """Destroy this engine's process group, if any; True when there was one."""
    import torch.distributed as dist
    from IPython import get_ipython

    get_ipython().user_ns.pop(CTX_NAME, None)
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        return True
    return False


def status() -> dict:
    """Live figures for cluster.info(): this process's memory and the node's load."""
    import psutil
    proc = psutil.Process()
    out = {"rss_gb": proc.memory_info().rss / 2**30,
           "mem_used_pct": psutil.virtual_memory().percent}
    import torch
    if torch.cuda.is_available():
        out["gpu_mem_gb"] = torch.cuda.memory_allocated() / 2**30
    return out


def call(fn, ctx, args, kwargs):
    """Run one SPMD step: fn(ctx, *args, **kwargs) on this engine."""
    if ctx is None:
        raise RuntimeError("this engine has no process group: reconnect with hpclab.connect()")
    return fn(ctx, *args, **kwargs)

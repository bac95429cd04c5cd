"""What is inside a compute node: CPUs, memory, disks, network interfaces, GPUs.

Unit A's "inspect the machine you are connected to". Runs anywhere; on engines through
`cluster.run`, so every rank reports the node it landed on:

    from hpclab.cluster.node import node_report, nic_table
    reports = cluster.run(lambda ctx: node_report())
    print(nic_table(reports[0]))

Sources: psutil for CPUs, memory, disks and NICs; /proc/cpuinfo for the CPU model;
/sys/class/infiniband for InfiniBand adapters (the RDMA network of most HPC clusters);
torch.cuda for GPUs. A figure the system does not expose is None, never a guess.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def nics() -> list[dict]:
    """Network interfaces: name, IPv4 address, up?, speed (Mbit/s, None if unknown), MTU."""
    import psutil
    stats = psutil.net_if_stats()
    out = []
    for name, addrs in sorted(psutil.net_if_addrs().items()):
        ipv4 = [a.address for a in addrs if a.family == socket.AF_INET]
        st = stats.get(name)
        out.append({"name": name, "ipv4": ipv4[0] if ipv4 else None,
                    "up": bool(st and st.isup),
                    "speed_mbit": (st.speed or None) if st else None,   # 0 means "unknown"
                    "mtu": st.mtu if st else None,
                    "loopback": name == "lo" or any(i.startswith("127.") for i in ipv4)})
    return out


def infiniband() -> list[dict]:
    """InfiniBand / RoCE adapters and their port rates, from /sys (empty without RDMA)."""
    root = Path("/sys/class/infiniband")
    out = []
    if not root.is_dir():
        return out
    for dev in sorted(root.iterdir()):
        for port in sorted((dev / "ports").glob("*")):
            try:
                rate = (port / "rate").read_text().strip()
                state = (port / "state").read_text().strip()
            except OSError:
                rate = state = None
            out.append({"device": dev.name, "port": port.name, "rate": rate, "state": state})
    return out


def gpus() -> list[dict]:
    import torch
    out = []
    for i in range(torch.cuda.device_count()):
        prop = torch.cuda.get_device_properties(i)
        out.append({"index": i, "name": prop.name, "memory_gb": prop.total_memory / 2**30,
                    "compute_capability": f"{prop.major}.{prop.minor}",
                    "multiprocessors": prop.multi_processor_count})
    return out


def node_report() -> dict:
    """One dict describing this node (and this process's view of it)."""
    import psutil
    vm = psutil.virtual_memory()
    disk = psutil.disk_usage(os.path.abspath(os.sep))
    try:
        affinity = len(os.sched_getaffinity(0))   # what a batch job may really use
    except AttributeError:
        affinity = None
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_logical": psutil.cpu_count(logical=True),
        "cores_usable": affinity,
        "load_1min": os.getloadavg()[0],
        "mem_total_gb": vm.total / 2**30,
        "mem_available_gb": vm.available / 2**30,
        "disk_root_gb": disk.total / 2**30,
        "disk_root_free_gb": disk.free / 2**30,
        "nics": nics(),
        "infiniband": infiniband(),
        "gpus": gpus(),
    }


def nic_table(report: dict) -> str:
    """The report's network interfaces as a small text table."""
    rows = [("name", "ipv4", "up", "speed", "mtu")]
    for n in report["nics"]:
        speed = f"{n['speed_mbit'] / 1000:g} Gbit/s" if n["speed_mbit"] else "unknown"
        rows.append((n["name"], n["ipv4"] or "-", "yes" if n["up"] else "no", speed,
                     str(n["mtu"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)

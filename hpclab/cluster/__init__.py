"""hpclab.cluster: a notebook connected to real processes.

    import hpclab
    with hpclab.connect(n=4) as cluster:            # 4 ipyparallel engines on this machine
        cluster.info()                              # ranks, hosts, devices, memory
        cluster.run(lambda ctx: ctx.rank)           # -> [0, 1, 2, 3]

Files: cluster.py (connect, Cluster), engine.py (what runs on each engine at connect),
handle.py (run_async's handle, failures -> RankError), info.py (the info table),
lifecycle.py (start / attach / stop without orphans), launchers.py (local | slurm | mpi
seam), slurm.py / mpi.py (launchers), slurm_diagnostics.py (what Slurm's messages mean),
net.py (outward IP, interfaces, free port), node.py (what is inside a node), errors.py,
context.py (DistContext), spawn.py (run_local: forked processes), security.py (private
connection files), doctor.py (`hpclab doctor`), vcluster.py / vcluster_net.py /
vcluster_slurm.py (`hpclab vcluster`: a Slurm cluster of namespace nodes on this machine).
ipyparallel is imported only when `connect`/`Cluster` are first used.
"""

from importlib import import_module

from hpclab.cluster.context import DistContext
from hpclab.cluster.errors import ClusterError, ClusterTimeout, RankError

_LAZY = {
    "connect": "hpclab.cluster.cluster",
    "Cluster": "hpclab.cluster.cluster",
    "RunHandle": "hpclab.cluster.handle",
    "ClusterInfo": "hpclab.cluster.info",
    "get_launcher": "hpclab.cluster.launchers",
    "run_local": "hpclab.cluster.spawn",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hpclab.cluster' has no attribute {name!r}")


__all__ = ["Cluster", "ClusterError", "ClusterInfo", "ClusterTimeout", "DistContext", "RankError",
           "RunHandle", "connect", "get_launcher", "run_local"]

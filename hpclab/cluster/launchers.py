"""Where engines run: the seam between `hpclab.connect` and a resource manager.

`connect(n, engines="local" | "slurm" | "mpi", **launcher_kwargs)` asks `get_launcher` for
an object following the `EngineLauncher` protocol below, then

    launcher.preflight(n)                 # raise ClusterError with the fix, before anything starts
    ipp.Cluster(n=n, **launcher.cluster_kwargs(n))
    ...engines do not register in time...
    ClusterTimeout(... + launcher.diagnose(waited_s))   # queue state, log path

`remote` says whether engines may live on other hosts; then the controller must listen on an
address they can reach (not 127.0.0.1) and the process-group rendezvous uses rank 0's
outward IP. The Slurm and MPI launchers live in slurm.py and mpi.py and are imported only
when asked for, so `engines="local"` never touches a scheduler.

    from hpclab.cluster.launchers import get_launcher
    get_launcher("slurm", partition="gpu", gpus_per_node=4)   # -> SlurmLauncher
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import import_module
from typing import Protocol, runtime_checkable

from hpclab.cluster.errors import ClusterError


@runtime_checkable
class EngineLauncher(Protocol):
    """What connect() needs from a way of starting engines."""

    name: str
    remote: bool   # engines on other hosts? then the controller listens on a reachable IP

    def cluster_kwargs(self, n: int) -> dict:
        """Extra keyword arguments for `ipyparallel.Cluster(...)` (launcher classes, ips)."""
        ...

    def preflight(self, n: int) -> None:
        """Check the request can succeed; raise ClusterError saying how to fix it."""
        ...

    def diagnose(self, waited_s: float) -> str:
        """Explain why engines did not register after `waited_s` seconds."""
        ...


@dataclass
class LocalLauncher:
    """Engines as subprocesses of this machine (ipyparallel's default launcher).

    `max_engines` guards against a typo such as n=400 forking hundreds of Python processes
    each importing torch (about 150 MB apiece).
    """

    name: str = "local"
    remote: bool = False
    max_engines: int = 64

    def cluster_kwargs(self, n: int) -> dict:
        return {"engine_launcher_class": "local", "controller_ip": "127.0.0.1"}

    def preflight(self, n: int) -> None:
        if n > self.max_engines:
            raise ClusterError(
                f"n={n} local engines exceeds max_engines={self.max_engines} "
                f"(this machine has {os.cpu_count()} CPUs); ask for fewer engines, or pass "
                "max_engines=... to connect() if you really mean it")

    def diagnose(self, waited_s: float) -> str:
        return (f"local engines did not register within {waited_s:.0f} s: the machine may be "
                f"overloaded ({_load()}); try a larger timeout= or fewer engines, and check the "
                "engine logs under ~/.ipython/profile_default/log/")


def _load() -> str:
    try:
        one, _, _ = os.getloadavg()
        return f"load average {one:.1f} on {os.cpu_count()} CPUs"
    except OSError:
        return "load average unknown"


# name -> (module, class); modules other than this one are imported only when asked for.
LAUNCHERS = {
    "local": ("hpclab.cluster.launchers", "LocalLauncher"),
    "slurm": ("hpclab.cluster.slurm", "SlurmLauncher"),
    "mpi": ("hpclab.cluster.mpi", "MPILauncher"),
}


def get_launcher(name: str | EngineLauncher, **launcher_kwargs) -> EngineLauncher:
    """The launcher called `name`, built with `launcher_kwargs`; a launcher object passes."""
    if not isinstance(name, str):
        if isinstance(name, EngineLauncher):
            if launcher_kwargs:
                raise ValueError(f"launcher keyword arguments {sorted(launcher_kwargs)} can "
                                 "only be given with a launcher name, not a launcher object")
            return name
        raise ValueError(f"engines must be one of {sorted(LAUNCHERS)} or an EngineLauncher, "
                         f"got {name!r}")
    if name not in LAUNCHERS:
        raise ValueError(f"engines must be one of {sorted(LAUNCHERS)}, got {name!r}")
    module, cls = LAUNCHERS[name]
    try:
        launcher_cls = getattr(import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise ClusterError(f"the {name!r} launcher ({module}.{cls}) is not available: "
                           f"{exc}") from exc
    try:
        return launcher_cls(**launcher_kwargs)
    except TypeError as exc:
        raise ValueError(f"bad keyword arguments for the {name!r} launcher: {exc}") from exc

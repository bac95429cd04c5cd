"""Engines started by `mpiexec`: `hpclab.connect(engines="mpi", n=4)`.

    import hpclab
    with hpclab.connect(n=4, engines="mpi") as cluster:                      # this machine
        ...
    with hpclab.connect(n=8, engines="mpi", hosts=["node1:4", "node2:4"]) as cluster:
        ...
    with hpclab.connect(n=4, engines="mpi", nodes=2) as cluster:           # through Slurm
        ...

The classic way to start a parallel program on a cluster without a scheduler (or inside an
`salloc` allocation): one `mpiexec -n N ipengine --mpi` through ipyparallel's own
MPIEngineSetLauncher. Each engine then knows its MPI rank (mpi4py), which is how MPI
programs and torch.distributed's ranks line up in Unit A's lecture.

With `nodes=`, Slurm starts the MPI program itself, as batch scripts on a cluster do:
`srun --mpi=pmix --nodes=2 --ntasks-per-node=2 ipengine --mpi` (Slurm's PMIx plugin tells
every rank its peers; no mpiexec, no ssh between nodes), and the controller listens on the
address that routes to slurmctld, where the nodes reach it. `pmi=` picks another plugin
(`srun --mpi=list` shows them; `pmi2` for MPICH).

Needs an MPI (`apt-get install openmpi-bin` or the cluster's `module load openmpi`) and
mpi4py (`pip install mpi4py`); `preflight` says which one is missing. Open MPI refuses to
run as root unless told: on a container where the notebook runs as root the launcher adds
`--allow-run-as-root` (and `--oversubscribe` on small machines, where MPI otherwise
refuses more ranks than cores).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from hpclab.cluster.errors import ClusterError
from hpclab.cluster.net import reachable_ip
from hpclab.cluster.slurm_diagnostics import controller_host


@dataclass
class MPILauncher:
    """`hosts` like mpiexec's --host ("node1:4"); empty = this machine only."""

    hosts: list[str] = field(default_factory=list)
    mpiexec: str = "mpiexec"
    mpi_args: list[str] = field(default_factory=list)
    controller_ip: str = ""          # "" = 127.0.0.1 on one machine, else the outward IP
    nodes: int = 0                   # > 0: Slurm's srun starts the ranks on this many nodes
    pmi: str = "pmix"                # srun's --mpi plugin (with nodes)
    srun: str = "srun"
    name: str = "mpi"
    remote: bool = False

    def __post_init__(self):
        if isinstance(self.hosts, str):
            raise TypeError(f"hosts must be a list such as ['node1:4', 'node2:4'], "
                             f"got the string {self.hosts!r}")
        if not isinstance(self.nodes, int) or self.nodes < 0:
            raise ValueError(f"nodes must be an int >= 0 (0: mpiexec), got {self.nodes!r}")
        if self.nodes and self.hosts:
            raise ValueError("give hosts (mpiexec --host) or nodes (srun through Slurm), "
                             f"not both: hosts={self.hosts!r}, nodes={self.nodes}")
        self.remote = bool(self.hosts) or self.nodes > 0

    def flavour(self) -> str:
        """'openmpi', 'mpich' or 'unknown' (from `mpiexec --version`)."""
        try:
            out = subprocess.run([self.mpiexec, "--version"], capture_output=True, text=True,
                                 timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        text = (out.stdout + out.stderr).lower()
        if "open mpi" in text or "openrte" in text or "open-mpi.org" in text:
            return "openmpi"
        return "mpich" if ("hydra" in text or "mpich" in text) else "unknown"

    def srun_args(self, n: int) -> list[str]:
        """srun's options for n ranks over `nodes` nodes, e.g. ['--mpi=pmix', '--nodes=2', ...]."""
        if n % self.nodes:
            raise ValueError(f"n={n} engines cannot be spread evenly over nodes={self.nodes}: "
                             "make n a multiple of nodes")
        return [f"--mpi={self.pmi}", f"--nodes={self.nodes}",
                f"--ntasks-per-node={n // self.nodes}", "--job-name=hpclab-mpi-engines",
                "--export=ALL", *self.mpi_args]

    def mpiexec_args(self) -> list[str]:
        args = list(self.mpi_args)
        if self.flavour() == "openmpi":
            if os.geteuid() == 0:
                args.append("--allow-run-as-root")
            args.append("--oversubscribe")   # more ranks than cores is fine for teaching
        if self.hosts:
            args += ["--host", ",".join(self.hosts)]
        return args

    # --- the EngineLauncher protocol ---------------------------------------------------
    def cluster_kwargs(self, n: int) -> dict:
        from traitlets.config import Config

        config = Config()
        if self.nodes:      # srun takes mpiexec's place: `srun -n N <its options> ipengine`
            config.MPIEngineSetLauncher.mpi_cmd = [self.srun]
            config.MPIEngineSetLauncher.mpi_args = self.srun_args(n)
            ip = self.controller_ip or reachable_ip(controller_host())
        else:
            config.MPIEngineSetLauncher.mpi_cmd = [self.mpiexec]
            config.MPIEngineSetLauncher.mpi_args = self.mpiexec_args()
            ip = self.controller_ip or (reachable_ip() if self.remote else "127.0.0.1")
        return {"engine_launcher_class": "mpi", "controller_ip": ip,
                "controller_location": ip, "config": config}

    def preflight(self, n: int) -> None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n (engines) must be a positive int, got {n!r}")
        if self.nodes:
            self.srun_args(n)
            if shutil.which(self.srun) is None:
                raise ClusterError(f"`{self.srun}` was not found on PATH, so engines='mpi' "
                                   f"with nodes={self.nodes} cannot start: install Slurm's "
                                   "client (apt-get install slurm-client), or drop nodes= to "
                                   "use mpiexec on this machine.")
        elif shutil.which(self.mpiexec) is None:
            raise ClusterError(
                f"`{self.mpiexec}` was not found on PATH, so engines='mpi' cannot start. "
                "Install an MPI (`apt-get install openmpi-bin`, or `module load openmpi` on a "
                "cluster), or use engines='local' / engines='slurm'.")
        try:
            import mpi4py  # noqa: F401  (ipengine --mpi asks mpi4py for its rank)
        except ImportError as exc:
            raise ClusterError("engines='mpi' needs mpi4py in this Python: `pip install "
                               f"mpi4py` (import failed: {exc})") from exc

    def diagnose(self, waited_s: float) -> str:
        log = self._newest_engine_log()
        where = f"read the mpiexec output in {log}" if log else \
            "the engine log is under ~/.ipython/profile_default/log/ (ipengine-*.log)"
        tail = ""
        if log:
            lines = log.read_text(errors="replace").splitlines()[-8:]
            tail = "\n  last lines:\n    " + "\n    ".join(lines) if lines else ""
        return (f"mpiexec's engines did not register within {waited_s:.0f} s: mpiexec may "
                "have failed to start them (wrong --host, no passwordless ssh between nodes, "
                f"mpi4py built for another MPI); {where}{tail}")

    @staticmethod
    def _newest_engine_log() -> Path | None:
        from IPython.paths import get_ipython_dir

        logs = sorted(Path(get_ipython_dir()).glob("profile_*/log/ipengine-*.log"),
                      key=lambda p: p.stat().st_mtime)
        return logs[-1] if logs else None

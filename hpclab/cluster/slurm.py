"""Engines as a Slurm job: `hpclab.connect(engines="slurm", ...)` on a cluster's login node.

    import hpclab
    with hpclab.connect(engines="slurm", nodes=2, gpus_per_node=4, n=8,
                        partition="gpu", time="01:00:00") as cluster:
        cluster.info()          # 8 engines, 4 per node, each one with its own GPU

The controller runs where the notebook runs and listens on an address the compute nodes can
reach (never 127.0.0.1, and not on every interface either: only the one that routes to the
Slurm controller). The engines are one batch job: `sbatch` a script whose single line is
`srun ipengine ...`, through ipyparallel's own SlurmEngineSetLauncher (so `scancel` on
close, `--export=ALL` carrying the virtual environment). The job is named
`hpclab-engines-<token>` so the queue can be asked about it by name.

Before anything starts, `preflight` asks the scheduler itself (`sbatch --test-only`) whether
the request can ever run: a request larger than the partition is an error now, not a job
pending for ever with Reason=PartitionConfig. When engines do not register in time,
`diagnose` reads the queue: pending (and why), running but silent (the log file to read),
gone, or close to its walltime. What Slurm's messages mean is slurm_diagnostics.py.
"""

from __future__ import annotations

import os
import re
import secrets
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from hpclab.cluster.errors import ClusterError
from hpclab.cluster.net import reachable_ip
from hpclab.cluster.slurm_diagnostics import (
    WalltimeWarning,
    controller_host,
    explain_slurm_error,
    first_line,
    queue,
    slurm_command,
    walltime_left,
    why_no_engines,
)

_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")     # Slurm's --time formats
_NAME = re.compile(r"^[A-Za-z0-9_.\-,]*$")              # partition / account / qos names


@dataclass
class SlurmLauncher:
    """Start engines with sbatch/srun. Fields mirror sbatch's options.

    `n` engines are spread evenly over `nodes`; with GPUs there is one engine per GPU, so
    n // nodes must not exceed `gpus_per_node`. `time` is the walltime in a Slurm format
    ("30", "01:00:00", "1-00:00:00"). `extra` holds more `#SBATCH` options verbatim.
    """

    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    partition: str = ""
    time: str = "01:00:00"
    account: str = ""
    qos: str = ""
    extra: list[str] = field(default_factory=list)
    controller_ip: str = ""          # "" = the local address that routes to slurmctld
    log_dir: str = "~/.hpclab/slurm"
    warn_walltime_s: float = 300.0   # diagnose/check_walltime warn below this
    name: str = "slurm"
    remote: bool = True
    job_name: str = field(default_factory=lambda: f"hpclab-engines-{secrets.token_hex(4)}")

    def __post_init__(self):
        for key in ("nodes", "cpus_per_task"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive int, got {value!r}")
        if not isinstance(self.gpus_per_node, int) or self.gpus_per_node < 0:
            raise ValueError(f"gpus_per_node must be an int >= 0, got {self.gpus_per_node!r}")
        if not _TIME.match(str(self.time)):
            raise ValueError(f"time must be a Slurm duration such as '30' (minutes), "
                             f"'01:00:00' or '1-00:00:00', got {self.time!r}")
        for key in ("partition", "account", "qos"):
            if not _NAME.match(getattr(self, key)):
                raise ValueError(f"{key} must be a plain Slurm name, got {getattr(self, key)!r}")

    # --- files -------------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        return Path(os.path.expanduser(self.log_dir))

    @property
    def log_path(self) -> Path:
        """stdout/stderr of the engine job (ipengine's and srun's messages end up here)."""
        return self.directory / f"{self.job_name}.log"

    @property
    def script_path(self) -> Path:
        return self.directory / f"{self.job_name}.sbatch"

    # --- the request -------------------------------------------------------------------
    def tasks_per_node(self, n: int) -> int:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n (engines) must be a positive int, got {n!r}")
        if n % self.nodes:
            raise ValueError(f"n={n} engines cannot be spread evenly over nodes={self.nodes}: "
                             "make n a multiple of nodes")
        per_node = n // self.nodes
        if self.gpus_per_node and per_node > self.gpus_per_node:
            raise ValueError(f"n={n} over nodes={self.nodes} is {per_node} engines per node, "
                             f"more than gpus_per_node={self.gpus_per_node}: one engine per GPU")
        return per_node

    def sbatch_options(self, n: int) -> list[str]:
        """The sbatch options of the engine job, e.g. ['--nodes=2', '--ntasks=8', ...]."""
        opts = [f"--job-name={self.job_name}", f"--nodes={self.nodes}", f"--ntasks={n}",
                f"--ntasks-per-node={self.tasks_per_node(n)}",
                f"--cpus-per-task={self.cpus_per_task}", f"--time={self.time}"]
        if self.gpus_per_node:
            opts.append(f"--gpus-per-node={self.gpus_per_node}")
        for key in ("partition", "account", "qos"):
            if getattr(self, key):
                opts.append(f"--{key}={getattr(self, key)}")
        opts += [f"--output={self.log_path}", "--export=ALL"]
        return opts + list(self.extra)     # last, so that they override ours

    def batch_template(self, n: int) -> str:
        """ipyparallel's batch template: our #SBATCH lines, then srun of the engines."""
        lines = ["#!/bin/sh"]
        lines += [f"#SBATCH {o}" for o in self.sbatch_options(n)]
        # ipyparallel formats the template with str.format: keep our own braces literal.
        body = "\n".join(lines).replace("{", "{{").replace("}", "}}")
        # --export=ALL: inside a job submitted with --export=<list> (a JupyterHub server),
        # srun would inherit SLURM_EXPORT_ENV and hide IPP_CONNECTION_INFO from the engines
        return body + "\nsrun --export=ALL {program_and_args}\n"

    # --- the EngineLauncher protocol ---------------------------------------------------
    def cluster_kwargs(self, n: int) -> dict:
        from traitlets.config import Config

        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = Config()
        launcher = config.SlurmEngineSetLauncher
        launcher.batch_template = self.batch_template(n)
        launcher.batch_file_name = str(self.script_path)   # absolute: not the notebook's cwd
        launcher.output_file = str(self.log_path)
        ip = self.controller_ip or reachable_ip(self.controller_host())
        return {"engine_launcher_class": "slurm", "controller_ip": ip,
                "controller_location": ip, "config": config}

    def preflight(self, n: int) -> None:
        self.tasks_per_node(n)
        ping = slurm_command(["scontrol", "ping"], timeout=30)
        if "DOWN" in ping.stdout or ping.returncode != 0:
            raise ClusterError(explain_slurm_error(
                "Unable to contact slurm controller: " + first_line(ping)))
        test = slurm_command(["sbatch", "--test-only", *self.sbatch_options(n), "--wrap", "true"],
                             timeout=60)
        if test.returncode != 0:
            raise ClusterError(f"engines={n} over nodes={self.nodes} cannot run: "
                               + explain_slurm_error(test.stderr or test.stdout))

    def diagnose(self, waited_s: float) -> str:
        jobs = self.jobs()
        text = why_no_engines(self.job_name, jobs, waited_s, self.log_path)
        warning = self.check_walltime(jobs) if jobs else None
        return text + (" " + warning if warning else "")

    # --- the queue ---------------------------------------------------------------------
    def controller_host(self) -> str | None:
        """The host slurmctld runs on (from `scontrol ping`), or None if unknown."""
        return controller_host()

    def jobs(self) -> list[dict]:
        """This launcher's jobs in the queue: id, state, reason, time_left, nodes."""
        return queue(self.job_name)

    def time_left_s(self) -> float | None:
        """Seconds before Slurm ends the engines' job (None: unlimited or not running)."""
        left = walltime_left(self.jobs())
        return None if left is None else left[1]

    def check_walltime(self, jobs: list[dict] | None = None) -> str | None:
        """Warn (WalltimeWarning) and return the message when the walltime is nearly over."""
        left = walltime_left(self.jobs() if jobs is None else jobs)
        if left is None or left[1] > self.warn_walltime_s:
            return None
        job_id, seconds = left
        message = (f"the engines' Slurm job {job_id} ends in {seconds:.0f} s (walltime "
                   f"{self.time}): save a checkpoint now, then reconnect with a longer time=")
        warnings.warn(message, WalltimeWarning, stacklevel=2)
        return message

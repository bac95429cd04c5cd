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
pending for ever with Reason=PartitionConfig. "Unable to contact slurm controller" and the
other classic messages are translated into what to do (the table `_EXPLAIN`). When engines do not register in time, `diagnose` reads the
queue: pending (and why), running but silent (the log file to read), gone, or close to its
walltime.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from hpclab.cluster.errors import ClusterError

_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")     # Slurm's --time formats
_NAME = re.compile(r"^[A-Za-z0-9_.\-,]*$")              # partition / account / qos names

# What a Slurm message means for a student, and what to try. Matched in order.
_EXPLAIN = [
    ("Unable to contact slurm controller",
     ("Slurm's controller (slurmctld) does not answer, so no job can be submitted. Check "
     "`scontrol ping`; on a cluster the scheduler may be down or this machine may not be a "
     "submit host (ask the admins); on a test machine start it with `.ci/slurm/start` and "
     "export the SLURM_CONF it prints.")),
    ("Requested node configuration is not available",
     ("the partition has no nodes that match this request (too many nodes, tasks per node, "
     "CPUs or GPUs per node). Ask for less, or pick a larger partition: `sinfo -o '%P %D %c "
     "%G'` lists nodes, CPUs and GPUs per partition.")),
    ("Invalid generic resource",
     ("the nodes of this partition have no GPUs (no `gpu` gres): use gpus_per_node=0 or a GPU "
     "partition (`sinfo -o '%P %G'`).")),
    ("invalid partition", "no such partition: `sinfo -s` lists the partitions you may use."),
    ("Invalid account", ("Slurm does not know this account for you: `sacctmgr show assoc "
     "user=$USER` lists yours (or leave account empty for your default).")),
    ("time limit",
     ("the requested time is longer than the partition allows: shorten time= (the limit is "
     "MaxTime in `scontrol show partition`).")),
    ("Node count specification invalid", "more nodes than the partition has: ask for fewer."),
    ("QOS", "the quality of service (qos) refuses this request: `sacctmgr show qos`."),
]

# Why a job waits, in words (squeue's REASON column).
_PENDING = {
    "Resources": "the nodes it needs are busy; it starts when they free up",
    "Priority": "jobs with higher priority are ahead of it in the queue",
    "PartitionConfig": "it asks for more than the partition offers and will never start",
    "PartitionNodeLimit": "it asks for more nodes than the partition allows; it will never start",
    "PartitionTimeLimit": "its time limit exceeds the partition's MaxTime; it will never start",
    "ReqNodeNotAvail": "the nodes it needs are down, drained or reserved",
    "QOSMaxWallDurationPerJobLimit": "its time limit exceeds what the qos allows",
    "AssocGrpGRES": "your account has reached its GPU limit",
    "BeginTime": "it was asked to start later",
    "Dependency": "it waits for another job",
}


def explain_slurm_error(message: str) -> str:
    """`message` (Slurm's stderr) followed by what it means and what to try."""
    text = message.strip()
    for needle, advice in _EXPLAIN:
        if needle.lower() in text.lower():
            return f"{advice}\n(Slurm said: {text})"
    return f"Slurm refused the request: {text}"


def slurm_command(args: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run a Slurm client command; a missing command or a hang becomes a ClusterError."""
    if shutil.which(args[0]) is None:
        raise ClusterError(
            f"`{args[0]}` was not found on PATH: this machine is not a Slurm submit host. "
            "Run the notebook on the cluster's login node (or its JupyterHub), or use "
            "engines='local' on a laptop.")
    try:
        return subprocess.run(args, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(
            f"`{' '.join(args)}` did not answer within {timeout:.0f} s: the Slurm controller "
            "is unreachable or overloaded (check `scontrol ping` and SLURM_CONF="
            f"{os.environ.get('SLURM_CONF', '<default /etc/slurm/slurm.conf>')})") from exc


def first_line(proc: subprocess.CompletedProcess) -> str:
    """The first line a command printed (scontrol ping adds a banner after it)."""
    lines = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    return lines[0] if lines else f"exit code {proc.returncode}"


def parse_slurm_time(text: str) -> float | None:
    """Seconds in a Slurm duration ("1-02:03:04", "02:03:04", "03:04", "5"); None = unlimited."""
    text = text.strip()
    if text.upper() in ("UNLIMITED", "INVALID", "NOT_SET", "") or text.upper().startswith("N/A"):
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:                              # days-hours[:minutes[:seconds]]
        parts += [0] * (3 - len(parts))
    elif len(parts) < 3:                  # minutes[:seconds]
        parts = [0] + parts + [0] * (2 - len(parts))
    h, m, s = parts
    seconds = h * 3600 + m * 60 + s
    return seconds + int(days or 0) * 86400


def reachable_ip(peer: str | None = None) -> str:
    """This machine's IPv4 address that other hosts (the compute nodes) can reach.

    The address the kernel would use to talk to `peer` (slurmctld's host: compute nodes sit
    on its network); if that is a loopback address, the first non-loopback interface. No
    packet is sent: connecting a UDP socket only picks the route.
    """
    if peer:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((socket.gethostbyname(peer), 9))
                ip = s.getsockname()[0]
            if not ip.startswith("127."):
                return ip
        except OSError:
            pass
    for name, ip in interfaces():
        if not ip.startswith("127."):
            return ip
    raise ClusterError("this machine has no network interface other than loopback, so engines "
                       "on other hosts cannot reach its controller; pass controller_ip=...")


def interfaces() -> list[tuple[str, str]]:
    """(name, IPv4 address) of the interfaces that are up, loopback included."""
    import psutil  # an ipyparallel dependency

    stats = psutil.net_if_stats()
    return [(name, a.address) for name, addrs in psutil.net_if_addrs().items()
            for a in addrs if a.family == socket.AF_INET and stats.get(name) and stats[name].isup]


class WalltimeWarning(UserWarning):
    """The engines' job is close to its time limit: save a checkpoint now."""


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
        return body + "\nsrun {program_and_args}\n"

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
        head = f"The Slurm job {self.job_name} had no engines registered after {waited_s:.0f} s: "
        jobs = self.jobs()
        if not jobs:
            return (head + "it is no longer in the queue (it failed or was cancelled). "
                    + self._log_hint())
        job = jobs[0]
        if job["state"] == "PENDING":
            why = _PENDING.get(job["reason"], "see `scontrol show job " + job["id"] + "`")
            return (head + f"job {job['id']} is still PENDING, reason {job['reason']}: {why}. "
                    "Wait longer (timeout=...), ask for fewer nodes/GPUs or less time, or try "
                    f"another partition; `squeue -j {job['id']} --start` estimates the start.")
        return (head + f"job {job['id']} is {job['state']} on {job['nodes']} "
                f"({job['time_left']} left), so its engines started but could not reach the "
                "controller (a firewall between compute and login node?) or crashed. "
                + self._log_hint() + (" " + self.check_walltime(jobs) if
                                      self.check_walltime(jobs) else ""))

    # --- the queue ---------------------------------------------------------------------
    def controller_host(self) -> str | None:
        """The host slurmctld runs on (from `scontrol ping`), or None if unknown."""
        try:
            out = slurm_command(["scontrol", "ping"], timeout=15).stdout
        except ClusterError:
            return None
        m = re.search(r"\bat (\S+) is", out)
        return m.group(1) if m else None

    def jobs(self) -> list[dict]:
        """This launcher's jobs in the queue: id, state, reason, time_left, nodes."""
        out = slurm_command(["squeue", "-h", "-n", self.job_name, "-o", "%i|%T|%r|%L|%N"])
        keys = ("id", "state", "reason", "time_left", "nodes")
        return [dict(zip(keys, line.split("|"))) for line in out.stdout.splitlines() if line]

    def time_left_s(self) -> float | None:
        """Seconds before Slurm ends the engines' job (None: unlimited or not running)."""
        running = [j for j in self.jobs() if j["state"] == "RUNNING"]
        return parse_slurm_time(running[0]["time_left"]) if running else None

    def check_walltime(self, jobs: list[dict] | None = None) -> str | None:
        """Warn (WalltimeWarning) and return the message when the walltime is nearly over."""
        running = [j for j in (self.jobs() if jobs is None else jobs) if j["state"] == "RUNNING"]
        left = parse_slurm_time(running[0]["time_left"]) if running else None
        if left is None or left > self.warn_walltime_s:
            return None
        message = (f"the engines' Slurm job {running[0]['id']} ends in {left:.0f} s (walltime "
                   f"{self.time}): save a checkpoint now, then reconnect with a longer time=")
        warnings.warn(message, WalltimeWarning, stacklevel=2)
        return message

    def _log_hint(self) -> str:
        tail = ""
        if self.log_path.exists():
            lines = self.log_path.read_text(errors="replace").splitlines()[-8:]
            tail = "\n  last lines:\n    " + "\n    ".join(lines) if lines else ""
        return f"Read the engine log {self.log_path}{tail}"

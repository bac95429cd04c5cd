"""What Slurm says, in words a student can act on: errors, the queue, the walltime.

The Slurm launcher (slurm.py) starts engines; this file explains what went wrong, for the
launcher and for `hpclab doctor`:

    explain_slurm_error("sbatch: error: ... Unable to contact slurm controller")
        -> "Slurm's controller (slurmctld) does not answer ... Check `scontrol ping` ..."
    queue("hpclab-engines-1a2b")          # [{'id', 'state', 'reason', 'time_left', 'nodes'}]
    why_no_engines(name, jobs, 95, log)   # pending (and why), running but silent, gone
    walltime_left(jobs)                   # seconds before Slurm ends the job

"Unable to contact slurm controller" and the other classic messages are translated by the
table `_EXPLAIN`; squeue's pending reasons by `_PENDING`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from hpclab.cluster.errors import ClusterError

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


class WalltimeWarning(UserWarning):
    """The engines' job is close to its time limit: save a checkpoint now."""


def controller_host() -> str | None:
    """The host slurmctld runs on (from `scontrol ping`), or None if unknown; its address
    when slurm.conf gives one (`SlurmctldHost=name(address)`)."""
    try:
        out = slurm_command(["scontrol", "ping"], timeout=15).stdout
    except ClusterError:
        return None
    m = re.search(r"\bat (\S+) is", out)
    if not m:
        return None
    # SlurmctldHost=name(address): the address the nodes reach it on (a cluster network)
    conf = slurm_command(["scontrol", "show", "config"], timeout=15).stdout
    addr = re.search(r"^SlurmctldHost\[0\]\s*=\s*\S+?\((\S+)\)", conf, re.MULTILINE)
    return addr.group(1) if addr else m.group(1)


def queue(job_name: str) -> list[dict]:
    """The jobs called `job_name` in the queue: id, state, reason, time_left, nodes."""
    out = slurm_command(["squeue", "-h", "-n", job_name, "-o", "%i|%T|%r|%L|%N"])
    keys = ("id", "state", "reason", "time_left", "nodes")
    return [dict(zip(keys, line.split("|"))) for line in out.stdout.splitlines() if line]


def walltime_left(jobs: list[dict]) -> tuple[str, float] | None:
    """(job id, seconds before Slurm ends it) of the first running job; None if unlimited
    or nothing runs."""
    running = [j for j in jobs if j["state"] == "RUNNING"]
    if not running:
        return None
    left = parse_slurm_time(running[0]["time_left"])
    return None if left is None else (running[0]["id"], left)


def log_hint(log_path: Path) -> str:
    """Where the engine job's log is, and its last lines."""
    tail = ""
    if log_path.exists():
        lines = log_path.read_text(errors="replace").splitlines()[-8:]
        tail = "\n  last lines:\n    " + "\n    ".join(lines) if lines else ""
    return f"Read the engine log {log_path}{tail}"


def why_no_engines(job_name: str, jobs: list[dict], waited_s: float, log_path: Path) -> str:
    """Why the job `job_name` had no engines registered after `waited_s` seconds."""
    head = f"The Slurm job {job_name} had no engines registered after {waited_s:.0f} s: "
    if not jobs:
        return (head + "it is no longer in the queue (it failed or was cancelled). "
                + log_hint(log_path))
    job = jobs[0]
    if job["state"] == "PENDING":
        why = _PENDING.get(job["reason"], "see `scontrol show job " + job["id"] + "`")
        return (head + f"job {job['id']} is still PENDING, reason {job['reason']}: {why}. "
                "Wait longer (timeout=...), ask for fewer nodes/GPUs or less time, or try "
                f"another partition; `squeue -j {job['id']} --start` estimates the start.")
    return (head + f"job {job['id']} is {job['state']} on {job['nodes']} "
            f"({job['time_left']} left), so its engines started but could not reach the "
            "controller (a firewall between compute and login node?) or crashed. "
            + log_hint(log_path))

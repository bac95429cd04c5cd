"""The Slurm of a virtual cluster: a slurmctld on the host, one slurmd inside each node.

Everything lives in the cluster's state directory (slurm.conf, spool, logs, pid files);
the daemons listen on their own ports (26817/26818 by default), so a system Slurm and the
test tier's single-node one (.ci/slurm, 16817/16818) are left alone; clients find this one
with SLURM_CONF=<state dir>/slurm.conf.

Each slurmd is started inside its node's network namespace and a fresh UTS namespace
that carries the node's hostname, so that slurmd (and every job step it starts: engines,
torch ranks) sees `hostname` = n1, n2, ...:

    nsenter --net=/run/netns/hpcvc-n1 unshare --uts sh -c 'hostname n1; exec slurmd ...'

`nsenter --net`, not `ip netns exec`: the latter remounts /sys, /sys/fs/cgroup is empty
there and slurmd dies. munged is shared with the host (a Unix socket); it is started only
when no munged answers, and only then stopped again by `down`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

from hpclab.cluster.vcluster_net import VClusterError, sh

CTLD_PORT, SLURMD_PORT = 26817, 26818


def conf_text(state: Path, nodes: list[dict], cpus: int, mem_mb: int, ctld_ip: str,
              ctld_port: int = CTLD_PORT, slurmd_port: int = SLURMD_PORT) -> str:
    names = ",".join(n["name"] for n in nodes)
    lines = [
        "# Written by hpclab vcluster up: a Slurm of virtual nodes (network namespaces).",
        "ClusterName=hpcvc",
        # must be this machine's own name ("This host not a valid controller"); the
        # address is the one the nodes reach it on
        f"SlurmctldHost={socket.gethostname().split('.')[0]}({ctld_ip})",
        f"SlurmctldPort={ctld_port}", f"SlurmdPort={slurmd_port}",
        "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "MpiDefault=none",
        "MailProg=/bin/true",
        # every node runs on the same cores: the configured CPUs count, not the hardware's
        "SlurmdParameters=config_overrides",
        f"StateSaveLocation={state}/spool/ctld",
        f"SlurmdSpoolDir={state}/spool/d/%n",
        f"SlurmctldPidFile={state}/run/slurmctld.pid",
        f"SlurmdPidFile={state}/run/slurmd.%n.pid",
        f"SlurmctldLogFile={state}/log/slurmctld.log",
        f"SlurmdLogFile={state}/log/slurmd.%n.log",
        # a /tmp of each node's own (start_slurmd makes it): with the host's one, job steps
        # on two nodes collide (srun --mpi=pmix: "spmix_appdir_...: File exists")
        f"TmpFS={state}/tmp/%n",
        "ReturnToService=2", "SlurmctldTimeout=30", "SlurmdTimeout=30", "InactiveLimit=0",
        "KillWait=5", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
    ]
    lines += [f"NodeName={n['name']} NodeAddr={n['ip']} NodeHostname={n['name']} "
              f"CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN" for n in nodes]
    lines.append(f"PartitionName=debug Nodes={names} Default=YES MaxTime=INFINITE State=UP "
                 "OverSubscribe=YES")
    return "\n".join(lines) + "\n"


def munge_works() -> bool:
    try:
        out = subprocess.run("munge -n | unmunge", shell=True, capture_output=True, check=False, timeout=5)
    except subprocess.TimeoutExpired:
        return False
    return out.returncode == 0


def start_munged() -> bool:
    """Make sure a munged answers; True when this call started it."""
    if munge_works():
        return False
    key = Path("/etc/munge/munge.key")
    if not key.exists() or key.stat().st_size == 0:
        sh("mungekey", "-c", "-k", str(key))
    for d in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
        os.makedirs(d, exist_ok=True)
        shutil.chown(d, "munge", "munge")
    shutil.chown(key, "munge", "munge")
    key.chmod(0o400)
    # as root munged refuses ("Logfile is insecure"): it runs as its own user
    sh("runuser", "-u", "munge", "--", "munged")
    for _ in range(50):
        if munge_works():
            return True
        time.sleep(0.1)
    raise VClusterError("munged did not start; see /var/log/munge/munged.log")


def start_slurmctld(conf: Path) -> None:
    # -c: a fresh start, no jobs or node states from an earlier cluster
    sh("slurmctld", "-c", "-f", str(conf), timeout=30)


def start_slurmd(conf: Path, netns: str, name: str) -> None:
    tmp = conf.parent / "tmp" / name
    tmp.mkdir(parents=True, exist_ok=True)
    tmp.chmod(0o1777)            # like /tmp: every user's job steps write there
    script = f"hostname {name} && exec slurmd -f {conf} -N {name}"
    sh("nsenter", f"--net=/run/netns/{netns}", "unshare", "--uts", "sh", "-c", script,
       timeout=30)


def node_states(conf: Path) -> dict[str, str]:
    """{node: state} as sinfo reports them ('idle', 'down*', ...); {} if no answer."""
    env = {**os.environ, "SLURM_CONF": str(conf)}
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, check=False,
                             text=True, timeout=10, env=env)
    except subprocess.TimeoutExpired:
        return {}
    return dict(line.split()[:2] for line in out.stdout.splitlines() if len(line.split()) >= 2)


def wait_idle(conf: Path, names: list[str], timeout: float, log_dir: Path) -> None:
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = node_states(conf)
        if all(states.get(n, "").rstrip("*~#") in ("idle", "mixed", "allocated") for n in names):
            return
        time.sleep(0.3)
    raise VClusterError(f"nodes not idle after {timeout:g} s: {states or 'sinfo gave no answer'}; "
                        f"see the logs in {log_dir}")


def cancel_jobs(conf: Path) -> None:
    env = {**os.environ, "SLURM_CONF": str(conf)}
    subprocess.run(["scancel", "--full", "--quiet", "--partition=debug"], env=env,
                   capture_output=True, timeout=15, check=False)


def pid_of(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def stop_pid(pid: int | None, name: str, grace: float = 10.0) -> None:
    """SIGTERM the process if it is `name` (the pid may have been reused), SIGKILL after
    `grace` seconds."""
    if pid is None:
        return
    try:
        proc = psutil.Process(pid)
        if proc.name() != name:
            return
        proc.send_signal(signal.SIGTERM)
        proc.wait(grace)
    except psutil.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    except psutil.NoSuchProcess:
        pass


def others_use_munge(ours: set[int]) -> bool:
    """Does any Slurm daemon other than ours run (and so still need munged)?"""
    for proc in psutil.process_iter(["name", "pid"]):
        if proc.info["name"] in ("slurmctld", "slurmd", "slurmstepd") and proc.pid not in ours:
            return True
    return False

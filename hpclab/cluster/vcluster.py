"""`hpclab vcluster`: a Slurm cluster of N nodes on this one machine, joined by shaped links.

    sudo hpclab vcluster up --nodes 2 --cpus-per-node 2 --link 1gbit    # about 10 s
    export SLURM_CONF=/tmp/hpclab-vcluster/slurm.conf                  # `up` prints this
    srun -N2 hostname                                                  # n1, n2
    hpclab vcluster status                   # nodes, addresses, link rates, Slurm states
    sudo hpclab vcluster down                # removes what `up` made, nothing else

In Python: `up(nodes=2, link="1gbit")` returns the `VCluster` (also `VCluster.load()`),
whose `env()` is the environment Slurm's clients need; then
`hpclab.connect(engines="slurm", nodes=2, n=4)` puts engines on n1 and n2.

A node is a network namespace with its own address (10.79.0.<i>) and a UTS namespace with
its own hostname (n<i>), running one slurmd; slurmctld runs on the host, on the bridge
address 10.79.0.254, which is also where the ipyparallel controller listens. The network
is vcluster_net.py, the Slurm part vcluster_slurm.py. Everything `up` makes is written to
<state dir>/state.json as it is made (names of namespaces and links, whether it started
munged), so `down` removes exactly that, also after an `up` that failed half-way.
Needs root (namespaces, slurmd), iproute2 (`ip`, `tc`), util-linux (`nsenter`, `unshare`),
Slurm and munge; `bash .ci/system-deps` installs them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from hpclab.cluster import vcluster_net as net
from hpclab.cluster import vcluster_slurm as slurm
from hpclab.cluster.vcluster_net import VClusterError

STATE_DIR = Path(os.environ.get("HPCLAB_VCLUSTER_DIR", "/tmp/hpclab-vcluster"))
PREFIX = "hpcvc"             # every bridge, veth and namespace we make starts with it
BRIDGE = f"{PREFIX}0"
SUBNET = "10.79.0.0/24"
UP_TIMEOUT_S = 30.0


@dataclass
class VCluster:
    """What `up` made: the record `down` and `status` work from."""

    state_dir: str
    subnet: str
    link: str                     # tc rate of each node's link, '' = unlimited
    cpus_per_node: int
    bridge: str = BRIDGE
    bridge_ip: str = ""
    nodes: list[dict] = field(default_factory=list)   # name, netns, veth, ip
    made_netns: list[str] = field(default_factory=list)
    made_links: list[str] = field(default_factory=list)
    started_munged: bool = False
    daemons: bool = False         # slurmctld / slurmds were started
    up_s: float = 0.0

    @property
    def conf(self) -> Path:
        return Path(self.state_dir) / "slurm.conf"

    def env(self) -> dict[str, str]:
        """Environment variables for Slurm's clients (sinfo, sbatch, hpclab.connect)."""
        return {"SLURM_CONF": str(self.conf)}

    def save(self) -> None:
        path = Path(self.state_dir) / "state.json"
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, state_dir: Path | str = STATE_DIR) -> VCluster | None:
        """The cluster recorded in `state_dir`, None if there is none."""
        path = Path(state_dir) / "state.json"
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def node_states(self) -> dict[str, str]:
        return slurm.node_states(self.conf)


# --- checks before anything is made ------------------------------------------------------
TOOLS = {"ip": "iproute2", "tc": "iproute2", "nsenter": "util-linux", "unshare": "util-linux",
         "slurmctld": "slurm-wlm", "slurmd": "slurm-wlm", "sinfo": "slurm-wlm",
         "munged": "munge", "mungekey": "munge"}


def preflight() -> None:
    """Root, the tools and the kernel's network namespaces, or an error naming what to do."""
    if os.geteuid() != 0:
        raise VClusterError("hpclab vcluster needs root (it makes network namespaces and runs "
                            "slurmd): run it with sudo, or as root in the course VM")
    missing = sorted({f"{tool} ({pkg})" for tool, pkg in TOOLS.items() if not shutil.which(tool)})
    if missing:
        raise VClusterError(f"missing {', '.join(missing)}: run `bash .ci/system-deps` (as "
                            "root), or apt-get install iproute2 util-linux slurm-wlm munge")
    if not Path("/proc/self/ns/net").exists() or not Path("/proc/self/ns/uts").exists():
        raise VClusterError("this kernel has no network or UTS namespaces "
                            "(CONFIG_NET_NS / CONFIG_UTS_NS): use a machine or VM whose kernel "
                            "has them (every distribution kernel does)")


def _check_args(nodes: int, cpus_per_node: int, link: str) -> None:
    if not isinstance(nodes, int) or not 1 <= nodes <= 64:
        raise ValueError(f"nodes must be an int in 1..64, got {nodes!r}")
    if not isinstance(cpus_per_node, int) or cpus_per_node < 1:
        raise ValueError(f"cpus_per_node must be an int >= 1, got {cpus_per_node!r}")
    net.check_rate(link)


# --- up / down / status ---------------------------------------------------------------------
def up(nodes: int = 2, cpus_per_node: int = 2, link: str = "", subnet: str = SUBNET,
       state_dir: Path | str = STATE_DIR, timeout: float = UP_TIMEOUT_S) -> VCluster:
    """Make the namespaces, bridge and links, start Slurm; wait until every node is idle.
    If anything fails, what was made so far is removed again and the error raised."""
    _check_args(nodes, cpus_per_node, link)
    preflight()
    state = Path(state_dir)
    if VCluster.load(state) is not None:
        raise VClusterError(f"a virtual cluster is already recorded in {state}: "
                            "`hpclab vcluster down` first (or status to look at it)")
    taken = [n for n in [BRIDGE, *(f"{PREFIX}-v{i}" for i in range(1, nodes + 1))]
             if net.exists_link(n)]
    taken += [n for n in net.netns_list() if n.startswith(f"{PREFIX}-n")]
    if taken:
        raise VClusterError(f"{', '.join(taken)} already exist but are not recorded in "
                            f"{state}: another virtual cluster? Remove them with `ip link del` "
                            "/ `ip netns del` if they are left over")
    t0 = time.monotonic()
    ipnet = net.check_subnet(subnet)
    hosts = list(ipnet.hosts())
    for sub in ("spool/ctld", "log", "run", *(f"spool/d/n{i}" for i in range(1, nodes + 1))):
        (state / sub).mkdir(parents=True, exist_ok=True)
    vc = VCluster(str(state), str(ipnet), link, cpus_per_node, bridge_ip=str(hosts[-1]))
    vc.save()
    try:
        net.add_bridge(BRIDGE, f"{vc.bridge_ip}/24")
        vc.made_links.append(BRIDGE)
        vc.save()
        for i in range(1, nodes + 1):
            node = {"name": f"n{i}", "netns": f"{PREFIX}-n{i}", "veth": f"{PREFIX}-v{i}",
                    "ip": str(hosts[i - 1])}
            vc.made_netns.append(node["netns"])
            vc.made_links.append(node["veth"])
            vc.nodes.append(node)
            vc.save()
            net.add_node(node["netns"], node["veth"], BRIDGE, f"{node['ip']}/24")
            if link:
                net.shape(node["netns"], node["veth"], link)
        vc.started_munged = slurm.start_munged()
        mem_mb = max(500, _mem_mb() * 8 // 10 // nodes)
        vc.conf.write_text(slurm.conf_text(state, vc.nodes, cpus_per_node, mem_mb, vc.bridge_ip))
        vc.daemons = True
        vc.save()
        slurm.start_slurmctld(vc.conf)
        for node in vc.nodes:
            slurm.start_slurmd(vc.conf, node["netns"], node["name"])
        slurm.wait_idle(vc.conf, [n["name"] for n in vc.nodes],
                        max(1.0, timeout - (time.monotonic() - t0)), state / "log")
    except BaseException:
        down(state)
        raise
    vc.up_s = time.monotonic() - t0
    vc.save()
    return vc


def down(state_dir: Path | str = STATE_DIR) -> list[str]:
    """Stop and remove what `up` recorded in `state_dir`; the problems left, as messages
    (an empty list: nothing of ours is left)."""
    vc = VCluster.load(state_dir)
    if vc is None:
        return []
    state = Path(state_dir)
    run = state / "run"
    if vc.daemons:
        slurm.cancel_jobs(vc.conf)
        ours = {slurm.pid_of(run / f"slurmd.{n['name']}.pid") for n in vc.nodes}
        ours.add(slurm.pid_of(run / "slurmctld.pid"))
        for node in vc.nodes:
            slurm.stop_pid(slurm.pid_of(run / f"slurmd.{node['name']}.pid"), "slurmd")
        slurm.stop_pid(slurm.pid_of(run / "slurmctld.pid"), "slurmctld")
        if vc.started_munged and not slurm.others_use_munge({p for p in ours if p}):
            slurm.stop_pid(slurm.pid_of(Path("/run/munge/munged.pid")), "munged")
    inodes = _netns_inodes(vc)
    _kill(_processes_in(inodes))       # job steps that outlived their slurmd
    problems = net.remove(vc.made_netns, vc.made_links)
    problems += [f"process {p} ({name}) still runs in a node's namespace"
                 for p, name in _processes_in(inodes)]
    if not problems:
        shutil.rmtree(state, ignore_errors=True)
    return problems


@contextmanager
def running(state_dir: Path | str, **up_kwargs) -> Iterator[VCluster]:
    """A cluster `up(..., state_dir=state_dir)` for the length of a with-block, SLURM_CONF
    pointing at it inside; `down` when the block ends, however it ends, and a VClusterError
    naming what `down` left behind."""
    vc = up(state_dir=state_dir, **up_kwargs)
    old = os.environ.get("SLURM_CONF")
    os.environ.update(vc.env())
    try:
        yield vc
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        problems = down(state_dir)
        if problems:
            raise VClusterError(f"the virtual cluster in {state_dir} left: "
                                f"{'; '.join(problems)}")


def _netns_inodes(vc: VCluster) -> set[int]:
    inodes = set()
    for name in vc.made_netns:
        try:
            inodes.add(os.stat(f"/run/netns/{name}").st_ino)
        except OSError:
            pass
    return inodes


def _processes_in(inodes: set[int]) -> list[tuple[int, str]]:
    """Processes whose network namespace is one of ours (slurmd, job steps, engines)."""
    left = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if os.stat(f"/proc/{proc.pid}/ns/net").st_ino in inodes:
                left.append((proc.pid, proc.info["name"]))
        except OSError:
            pass
    return left


def _kill(procs: list[tuple[int, str]]) -> None:
    alive = []
    for pid, _ in procs:
        try:
            proc = psutil.Process(pid)
            proc.kill()
            alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


def status_text(vc: VCluster) -> str:
    states = vc.node_states()
    rate = vc.link or "unlimited"
    lines = [(f"virtual cluster in {vc.state_dir}: {len(vc.nodes)} nodes × {vc.cpus_per_node} "
              f"CPUs, bridge {vc.bridge} {vc.bridge_ip} (slurmctld, controller), "
              f"link {rate}, up in {vc.up_s:.1f} s"),
             f"  export SLURM_CONF={vc.conf}",
             f"  {'node':<5} {'address':<14} {'netns':<10} {'link (in/out)':<16} slurm"]
    present = set(net.netns_list())
    for n in vc.nodes:
        link_in = net.link_rate(n["veth"]) or ("-" if net.exists_link(n["veth"]) else "gone")
        where = n["netns"] if n["netns"] in present else "gone"
        lines.append(f"  {n['name']:<5} {n['ip']:<14} {where:<10} {link_in:<16} "
                     f"{states.get(n['name'], 'no answer')}")
    return "\n".join(lines)


def _mem_mb() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("MemTotal"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hpclab vcluster", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    u = sub.add_parser("up", help="make the nodes and links, start Slurm")
    u.add_argument("--nodes", type=int, default=2)
    u.add_argument("--cpus-per-node", type=int, default=2)
    u.add_argument("--link", default="", help="rate of each node's link, e.g. 1gbit")
    u.add_argument("--subnet", default=SUBNET)
    u.add_argument("--timeout", type=float, default=UP_TIMEOUT_S)
    sub.add_parser("status", help="nodes, addresses, link rates, Slurm node states")
    sub.add_parser("down", help="stop Slurm, remove the nodes and links")
    for s in sub.choices.values():
        s.add_argument("--state-dir", default=str(STATE_DIR))
    args = p.parse_args(argv)
    try:
        if args.command == "up":
            vc = up(args.nodes, args.cpus_per_node, args.link, args.subnet, args.state_dir,
                    args.timeout)
            print(status_text(vc))
            return 0
        vc = VCluster.load(args.state_dir)
        if args.command == "status":
            if vc is None:
                print(f"no virtual cluster recorded in {args.state_dir}")
                return 1
            print(status_text(vc))
            return 0
        problems = down(args.state_dir)
        print("\n".join(problems) if problems else
              "nothing recorded: nothing to do" if vc is None else
              f"down: removed {len(vc.nodes)} nodes, {vc.bridge}, {args.state_dir}")
        return 1 if problems else 0
    except (VClusterError, ValueError) as exc:
        print(f"hpclab vcluster {args.command}: {exc}", file=sys.stderr)
        return 1

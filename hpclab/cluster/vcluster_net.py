"""The network of a virtual cluster: nodes as Linux namespaces on a bridge of their own.

A node is a network namespace (its own interfaces, addresses, ports) whose processes also
get their own UTS namespace (their own hostname) when vcluster_slurm starts its slurmd.
The nodes hang on one bridge, which also carries the host's address on the cluster's
subnet (where slurmctld and the ipyparallel controller listen):

    host  hpcvc0 10.79.0.254/24 ── hpcvc-v1 ═ eth0 10.79.0.1  (netns hpcvc-n1, hostname n1)
                                └─ hpcvc-v2 ═ eth0 10.79.0.2  (netns hpcvc-n2, hostname n2)

A link of rate R ("1gbit") is a token-bucket filter (tc tbf) on both ends of each node's
veth pair, so traffic into and out of every node is limited to R, as a node's network card
would; traffic between two ranks of one node never leaves its namespace and is not
limited. The kernels these labs run on have tbf but not netem: bandwidth can be shaped,
latency cannot.

Only names this module makes are touched: the bridge, the veths and namespaces that
start with the prefix. Nothing changes the host's routes, addresses, existing interfaces
or firewall; the nodes have no default route, so their traffic stays on the bridge.
Every function runs `ip`/`tc` and raises VClusterError with the command's own message.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess

from hpclab.cluster.errors import ClusterError

# tbf's bucket: what passes at line rate after a pause; 256 KiB reached 1 Gbit/s here
BURST = "256kb"
LATENCY = "50ms"     # how long a packet may wait for tokens before tbf drops it


class VClusterError(ClusterError):
    """Setting up or tearing down the virtual cluster failed; the message says how to fix it."""


def sh(*args: str, check: bool = True, timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Run a command; failure → VClusterError quoting the command and what it printed."""
    try:
        out = subprocess.run(list(args), capture_output=True, check=False, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise VClusterError(f"`{args[0]}` is not installed: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise VClusterError(f"`{' '.join(args)}` did not finish within {timeout:g} s") from exc
    if check and out.returncode != 0:
        raise VClusterError(f"`{' '.join(args)}` failed (exit {out.returncode}): "
                            f"{(out.stderr or out.stdout).strip()}")
    return out


def check_rate(rate: str) -> str:
    """'1gbit', '100mbit', '10gbit' ... (tc's units); '' means no limit."""
    if rate and not re.fullmatch(r"\d+(\.\d+)?(k|m|g)?bit", rate):
        raise ValueError(f"link must be a rate such as '1gbit', '100mbit' or '' (no limit), "
                         f"got {rate!r}")
    return rate


def rate_bits(rate: str) -> float:
    """'1gbit' -> 1e9 bits per second (inf when unlimited)."""
    if not rate:
        return float("inf")
    number, unit = re.fullmatch(r"([\d.]+)(k|m|g)?bit", rate).groups()
    return float(number) * {"k": 1e3, "m": 1e6, "g": 1e9, None: 1.0}[unit]


def check_subnet(subnet: str) -> ipaddress.IPv4Network:
    """The cluster's /24, which no route of this machine may already cover."""
    net = ipaddress.IPv4Network(subnet, strict=True)
    if net.prefixlen != 24:
        raise ValueError(f"subnet must be a /24 such as 10.79.0.0/24, got {subnet}")
    for line in sh("ip", "-4", "route", "show").stdout.splitlines():
        dest = line.split()[0]
        if dest == "default":
            continue
        if net.overlaps(ipaddress.IPv4Network(dest, strict=False)):
            raise VClusterError(f"subnet {net} overlaps this machine's route `{line.strip()}`: "
                                "choose another with --subnet (e.g. 10.80.0.0/24)")
    return net


def exists_link(name: str) -> bool:
    return sh("ip", "link", "show", name, check=False).returncode == 0


def netns_list() -> list[str]:
    return [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line]


def add_bridge(name: str, address: str) -> None:
    sh("ip", "link", "add", name, "type", "bridge")
    sh("ip", "addr", "add", address, "dev", name)
    sh("ip", "link", "set", name, "up")


def add_node(netns: str, veth: str, bridge: str, address: str) -> None:
    """Namespace `netns` with eth0 at `address` (CIDR), its peer `veth` on the bridge."""
    sh("ip", "netns", "add", netns)
    sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
    sh("ip", "link", "set", veth, "master", bridge, "up")
    sh("ip", "-n", netns, "addr", "add", address, "dev", "eth0")
    sh("ip", "-n", netns, "link", "set", "eth0", "up")
    sh("ip", "-n", netns, "link", "set", "lo", "up")


def shape(netns: str, veth: str, rate: str) -> None:
    """Limit the node's link to `rate` both ways: into the node (the host-side veth sends
    to it) and out of it (its eth0)."""
    tbf = ["root", "tbf", "rate", rate, "burst", BURST, "latency", LATENCY]
    sh("tc", "qdisc", "add", "dev", veth, *tbf)
    sh("tc", "-n", netns, "qdisc", "add", "dev", "eth0", *tbf)


def link_rate(veth: str) -> str:
    """The tbf rate tc reports on `veth` ('1Gbit'), '' when unlimited or gone."""
    out = sh("tc", "qdisc", "show", "dev", veth, check=False).stdout
    m = re.search(r"tbf .*?rate (\S+)", out)
    return m.group(1) if m else ""


def remove(netns: list[str], links: list[str]) -> list[str]:
    """Delete these namespaces and links if they exist (deleting a namespace deletes its
    end of a veth pair, and so the pair); what could not be removed, as messages."""
    problems = []
    present = set(netns_list())
    for name in netns:
        if name in present:
            out = sh("ip", "netns", "del", name, check=False)
            if out.returncode:
                problems.append(f"netns {name}: {out.stderr.strip()}")
    for name in links:
        if exists_link(name):
            out = sh("ip", "link", "del", name, check=False)
            # the kernel may still have been removing a veth whose namespace end just went
            if out.returncode and exists_link(name):
                problems.append(f"link {name}: {out.stderr.strip()}")
    return problems

"""This machine on the network: its outward address, its interfaces, a free port.

    outward_ip()              # '10.0.0.7': the address other hosts reach this one on
    interface_of("10.0.0.7")  # 'eth0': for GLOO_SOCKET_IFNAME
    interfaces()              # [('lo', '127.0.0.1'), ('eth0', '10.0.0.7')]
    reachable_ip(peer)        # the address a given peer (slurmctld's host) can reach
    free_port()               # a TCP port nobody listens on right now

No function sends a packet: connecting a UDP socket only asks the kernel which source
address it would route from. `free_port` is for servers that must be told a port number
(a test's fake slurmctld); a process group's rendezvous never uses it, because the port can
be taken between the check and the bind: rank 0 binds port 0 itself and reports the port.
"""

from __future__ import annotations

import socket

from hpclab.cluster.errors import ClusterError


def _route_source(peer: str) -> str:
    """The local address the kernel would use to reach `peer` (raises OSError)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((peer, 9))
        return s.getsockname()[0]


def outward_ip() -> str:
    """The IP other hosts reach this one on (the interface of the default route).

    Without a default route (a node of a cluster network, a virtual cluster's namespace):
    the first interface that is not loopback; then the hostname's address, then loopback
    (a machine without a network).
    """
    try:
        return _route_source("10.255.255.255")
    except OSError:
        pass
    for _, ip in interfaces():
        if not ip.startswith("127."):
            return ip
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def interfaces() -> list[tuple[str, str]]:
    """(name, IPv4 address) of the interfaces that are up, loopback included."""
    import psutil  # an ipyparallel dependency

    stats = psutil.net_if_stats()
    return [(name, a.address) for name, addrs in psutil.net_if_addrs().items()
            for a in addrs if a.family == socket.AF_INET and stats.get(name) and stats[name].isup]


def interface_of(ip: str) -> str | None:
    """Network interface name (eth0, ib0 ...) holding `ip`, None if no interface has it."""
    for name, address in interfaces():
        if address == ip:
            return name
    return None


def reachable_ip(peer: str | None = None) -> str:
    """This machine's IPv4 address that other hosts (the compute nodes) can reach.

    The address the kernel would use to talk to `peer` (slurmctld's host: compute nodes sit
    on its network); if that is a loopback address, the first non-loopback interface.
    """
    if peer:
        try:
            ip = _route_source(socket.gethostbyname(peer))
            if not ip.startswith("127."):
                return ip
        except OSError:
            pass
    for _, ip in interfaces():
        if not ip.startswith("127."):
            return ip
    raise ClusterError("this machine has no network interface other than loopback, so engines "
                       "on other hosts cannot reach its controller; pass controller_ip=...")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that was free a moment ago (someone may take it before you)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]

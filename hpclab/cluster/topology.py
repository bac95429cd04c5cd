"""Network topologies of a GPU cluster as graphs: a two-level fat tree and a rail-optimised
network, with the arithmetic the lecture does on them (the picture: topology_picture.py).

    t = fat_tree(leaves=4, hosts_per_leaf=4, spines=2, host_gbit=100, uplink_gbit=100)
    t.oversubscription()          # σ = h·b / (S·u): 4·100 / (2·100) = 2
    t.bisection_gbit()            # (N/2)·b·min(1, 1/σ) = 8·100/2 = 400 Gbit/s
    r = rail_optimised(nodes=4, gpus_per_node=4, spines=2, nic_gbit=400, uplink_gbit=400)
    topology_picture.draw(t)      # the picture: hpclab/cluster/topology_picture.py

A two-level fat tree (leaf–spine, a folded Clos network): L leaf switches with h hosts each
(N = L·h hosts, one link of b Gbit/s each) and S spine switches, every leaf joined to every
spine by a link of u Gbit/s. A leaf takes in up to h·b from its hosts and can pass S·u up:
the oversubscription is σ = h·b / (S·u) (σ = 1: full bisection bandwidth). Cut the hosts
into two halves of whole leaves: every spine then carries at most L/2·u from one half to
the other, so the bisection bandwidth (the least total bandwidth across any cut that splits
the hosts in half) is S·(L/2)·u = (N/2)·b/σ, or (N/2)·b, the host links themselves, when
σ ≤ 1. tests/cluster/test_topology.py checks this against networkx's minimum cut over every
balanced split.

Rail-optimised (NVIDIA's DGX SuperPOD, Meta's and others' training clusters): each of a
node's g GPUs has its own NIC, and NIC j of every node goes to leaf ("rail") switch j; the
rails join through spines. GPUs with the same local rank on different nodes are one hop
apart through their rail (the rail switch is on both sides of any split of the nodes, so
rail-aligned traffic has the full (M/2)·g·b across it whatever σ); inside a node the GPUs
talk over NVLink. That is the shape of the
hierarchical all-reduce (hpclab/comm/hierarchical.py): its phase across nodes is k rings,
one per local rank ℓ — one per rail.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HOST, GPU, SWITCH = "host", "gpu", "switch"


@dataclass
class Topology:
    """Vertices with a layer (0 = hosts or GPUs, 1 = leaf or rail, 2 = spine) and a kind,
    and links (a, b, Gbit/s); `params` holds the numbers it was built from."""

    name: str
    layers: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    links: list[tuple[str, str, float]] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)   # GPU -> its node (rail-optimised)
    params: dict = field(default_factory=dict)

    def add(self, name: str, layer: int, kind: str) -> str:
        self.layers[name], self.kinds[name] = layer, kind
        return name

    def endpoints(self) -> list[str]:
        """The vertices traffic starts and ends at (hosts, GPUs), in order."""
        return [v for v, k in self.kinds.items() if k != SWITCH]

    def oversubscription(self) -> float:
        """σ: what a leaf can take in from below over what it can pass up."""
        p = self.params
        if self.name == "fat tree":
            return p["hosts_per_leaf"] * p["host_gbit"] / (p["spines"] * p["uplink_gbit"])
        return p["nodes"] * p["nic_gbit"] / (p["spines"] * p["uplink_gbit"])

    def bisection_gbit(self) -> float:
        """The least total bandwidth across a cut that splits the endpoints in half
        (for rail-optimised: whole nodes on each side, NVLink not drawn).
        Fat tree: (N/2)·b·min(1, 1/σ). Rail-optimised: (M/2)·g·b whatever σ — every rail
        switch has NICs of both halves, so traffic between GPUs of the same local rank
        never climbs to the spines; σ limits only traffic from one rail to another."""
        p = self.params
        if self.name == "fat tree":
            return len(self.endpoints()) / 2 * p["host_gbit"] * min(1.0, 1 / self.oversubscription())
        return p["nodes"] / 2 * p["gpus_per_node"] * p["nic_gbit"]


def _check(**numbers) -> None:
    for name, value in numbers.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")


def fat_tree(leaves: int = 4, hosts_per_leaf: int = 4, spines: int = 2,
             host_gbit: float = 100, uplink_gbit: float = 100) -> Topology:
    """A two-level fat tree: `leaves` leaf switches of `hosts_per_leaf` hosts, every leaf
    linked to each of `spines` spine switches."""
    _check(leaves=leaves, hosts_per_leaf=hosts_per_leaf, spines=spines, host_gbit=host_gbit,
           uplink_gbit=uplink_gbit)
    t = Topology("fat tree", params={"leaves": leaves, "hosts_per_leaf": hosts_per_leaf,
                                         "spines": spines, "host_gbit": host_gbit,
                                         "uplink_gbit": uplink_gbit})
    tops = [t.add(f"spine{s}", 2, SWITCH) for s in range(spines)]
    for leaf in range(leaves):
        sw = t.add(f"leaf{leaf}", 1, SWITCH)
        t.links += [(sw, top, uplink_gbit) for top in tops]
        for h in range(hosts_per_leaf):
            t.links.append((t.add(f"host{leaf * hosts_per_leaf + h}", 0, HOST), sw, host_gbit))
    return t


def rail_optimised(nodes: int = 4, gpus_per_node: int = 4, spines: int = 2,
                   nic_gbit: float = 400, uplink_gbit: float = 400) -> Topology:
    """`nodes` nodes of `gpus_per_node` GPUs; GPU j of every node has a NIC on rail switch
    j; every rail switch is linked to each of `spines` spine switches."""
    _check(nodes=nodes, gpus_per_node=gpus_per_node, spines=spines, nic_gbit=nic_gbit,
           uplink_gbit=uplink_gbit)
    t = Topology("rail-optimised", params={"nodes": nodes, "gpus_per_node": gpus_per_node,
                                               "spines": spines, "nic_gbit": nic_gbit,
                                               "uplink_gbit": uplink_gbit})
    tops = [t.add(f"spine{s}", 2, SWITCH) for s in range(spines)]
    rails = [t.add(f"rail{j}", 1, SWITCH) for j in range(gpus_per_node)]
    for rail in rails:
        t.links += [(rail, top, uplink_gbit) for top in tops]
    for m in range(nodes):
        for j in range(gpus_per_node):
            gpu = t.add(f"n{m}.gpu{j}", 0, GPU)
            t.groups[gpu] = f"node {m}"
            t.links.append((gpu, rails[j], nic_gbit))
    return t


def positions(t: Topology) -> dict[str, tuple[float, float]]:
    """x spread evenly per layer (in the order the vertices were added), y = layer."""
    out = {}
    for layer in sorted(set(t.layers.values())):
        names = [v for v, lay in t.layers.items() if lay == layer]
        for i, v in enumerate(names):
            out[v] = ((i + 0.5) / len(names), float(layer))
    return out

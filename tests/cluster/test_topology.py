"""hpclab/cluster/topology.py and topology_picture.py: the graphs have the textbook's shape,
σ and the bisection bandwidth in closed form equal the minimum cut that networkx finds over
every balanced split of the endpoints, and the picture draws every vertex and link.
(networkx comes with torch.)"""

from itertools import combinations

import matplotlib.pyplot as plt
import networkx as nx
import pytest

from hpclab.cluster import topology, topology_picture

pytestmark = [pytest.mark.unit_a]


def min_bisection(t: topology.Topology, whole=None) -> float:
    """The least capacity of a cut that puts half the endpoints (or of the groups in
    `whole`, kept together) on each side: a minimum s–t cut per split (max-flow)."""
    g = nx.Graph()
    for a, b, gbit in t.links:
        g.add_edge(a, b, capacity=gbit)
    units = whole or [[v] for v in t.endpoints()]
    best = float("inf")
    for left in combinations(range(len(units)), len(units) // 2):
        if 0 not in left:        # each split once
            continue
        h = g.copy()
        for i, unit in enumerate(units):
            for v in unit:
                h.add_edge("S" if i in left else "T", v, capacity=float("inf"))
        best = min(best, nx.minimum_cut(h, "S", "T")[0])
    return best


@pytest.mark.parametrize("spines, uplink, sigma", [(2, 100, 2.0), (4, 100, 1.0), (1, 50, 8.0)])
def test_fat_tree_oversubscription_and_bisection_are_the_min_cut(spines, uplink, sigma):
    t = topology.fat_tree(leaves=4, hosts_per_leaf=4, spines=spines, host_gbit=100,
                          uplink_gbit=uplink)
    assert len(t.endpoints()) == 16 and len(t.links) == 16 + 4 * spines
    assert t.oversubscription() == sigma
    assert t.bisection_gbit() == 8 * 100 / max(sigma, 1)
    leaves = [[f"host{4 * j + h}" for h in range(4)] for j in range(4)]
    assert min_bisection(t, whole=leaves) == pytest.approx(t.bisection_gbit())
    small = topology.fat_tree(leaves=2, hosts_per_leaf=3, spines=spines, host_gbit=100,
                              uplink_gbit=uplink)   # any split of the hosts, not just leaves
    assert min_bisection(small) == pytest.approx(small.bisection_gbit())


def test_rail_optimised_rails_join_same_local_rank_and_bisection_ignores_spines():
    t = topology.rail_optimised(nodes=4, gpus_per_node=2, spines=1, nic_gbit=400,
                                uplink_gbit=100)
    rails = {a: b for a, b, _ in t.links if a.startswith("n")}
    assert rails == {f"n{m}.gpu{j}": f"rail{j}" for m in range(4) for j in range(2)}
    assert t.oversubscription() == 16.0
    nodes = [[f"n{m}.gpu{j}" for j in range(2)] for m in range(4)]
    assert min_bisection(t, whole=nodes) == pytest.approx(t.bisection_gbit()) == 2 * 2 * 400


def test_invalid_sizes_name_the_value():
    with pytest.raises(ValueError, match="spines must be > 0, got 0"):
        topology.fat_tree(spines=0)


@pytest.mark.parametrize("build", [topology.fat_tree, topology.rail_optimised])
def test_picture_draws_every_vertex_and_link(build):
    t = build()
    ax = topology_picture.draw(t)
    assert len(ax.lines) == len(t.links)
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(t.layers)
    assert "σ = " in ax.get_title() and "bisection" in ax.get_title()
    plt.close(ax.figure)

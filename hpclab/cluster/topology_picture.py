"""The picture of a topology.Topology: switches as boxes, hosts or GPUs as circles, links
as lines whose width grows with their bandwidth, one row per layer.

    from hpclab.cluster import topology, topology_picture
    ax = topology_picture.draw(topology.fat_tree(leaves=4, hosts_per_leaf=4, spines=2))

Returns the axes (a new figure when `ax` is None), titled with σ and the bisection
bandwidth, so a notebook can put a fat tree and a rail-optimised network side by side.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from hpclab.cluster.topology import SWITCH, Topology, positions

LAYER_NAMES = {"fat tree": ("hosts", "leaf switches", "spine switches"),
               "rail-optimised": ("GPUs (one NIC each)", "rail switches", "spine switches")}


def draw(t: Topology, ax=None, title: str | None = None):
    ax = plt.subplots(figsize=(7, 3.2))[1] if ax is None else ax
    xy = positions(t)
    widest = max(g for _, _, g in t.links)
    for a, b, gbit in t.links:
        (x0, y0), (x1, y1) = xy[a], xy[b]
        ax.plot([x0, x1], [y0, y1], color="0.55", lw=0.6 + 2.4 * gbit / widest, zorder=1)
    nodes = sorted(set(t.groups.values()), key=list(t.groups.values()).index)
    for v, (x, y) in xy.items():
        if t.kinds[v] == SWITCH:
            ax.scatter([x], [y], marker="s", s=260, color="C0", zorder=2)
        else:
            colour = f"C{1 + nodes.index(t.groups[v]) % 9}" if v in t.groups else "C1"
            ax.scatter([x], [y], marker="o", s=80, color=colour, zorder=2)
    for layer, label in enumerate(LAYER_NAMES[t.name]):
        ax.text(-0.02, layer, label, ha="right", va="center", fontsize=8)
    if t.groups:   # rail-optimised: say which colour is which node
        ax.text(0.5, -0.45, "colour = node; GPU j of every node hangs on rail j",
                ha="center", fontsize=8)
    ax.set(xlim=(-0.45, 1.02), ylim=(-0.6, 2.5), xticks=[], yticks=[])
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title or (f"{t.name}: σ = {t.oversubscription():g}, bisection "
                           f"{t.bisection_gbit():g} Gbit/s"), fontsize=10)
    return ax

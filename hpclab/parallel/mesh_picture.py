"""A picture of a pp × dp × tp mesh: every rank in its grid, its groups coloured.

    from hpclab.parallel.mesh_picture import draw_mesh, mesh_groups
    mesh_groups(dp=2, tp=2, pp=2)["tp"]            # [[0, 1], [2, 3], [4, 5], [6, 7]]
    draw_mesh(dp=2, tp=2, pp=2, gpus_per_node=4)    # three panels: TP, DP, PP groups

The rank arithmetic is Megatron-LM's order (tensor fastest, pipeline slowest): rank r sits
at stage k, replica d, shard j with

    r = (k·dp + d)·tp + j,   k = r // (dp·tp),   d = (r // tp) mod dp,   j = r mod tp

so the t ranks of a TP group are consecutive — on nodes of g GPUs with t dividing g they
share one node's NVLink — a DP group takes every tp-th rank of one stage, and a PP group
takes every (dp·tp)-th rank, one per stage: the groups hpclab.parallel.mesh's Mesh builds
(tests/parallel/test_mesh_picture.py compares them).

The picture draws stage k as a dp × tp block of cells (row d, column j), the blocks side
by side, one panel per kind of group, stacked; in each panel the cells of one group share
a colour. With `gpus_per_node=g` every cell also names its node, r // g.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

KINDS = ("tp", "dp", "pp")
TITLES = {"tp": "TP groups (inside a node)", "dp": "DP groups (gradient all-reduce)",
          "pp": "PP groups (one rank per stage)"}


def _check(dp: int, tp: int, pp: int) -> None:
    for name, n in (("dp", dp), ("tp", tp), ("pp", pp)):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be a positive int, got {n!r}")


def rank_of(k: int, d: int, j: int, dp: int, tp: int) -> int:
    """r = (k·dp + d)·tp + j: the rank at stage k, replica d, tensor shard j."""
    return (k * dp + d) * tp + j


def coords(rank: int, dp: int, tp: int) -> tuple[int, int, int]:
    """(k, d, j) of `rank`: pipeline stage, data-parallel replica, tensor shard."""
    return rank // (dp * tp), (rank // tp) % dp, rank % tp


def mesh_groups(dp: int, tp: int, pp: int = 1) -> dict[str, list[list[int]]]:
    """Every group of each kind, as sorted lists of ranks (the lists new_group takes)."""
    _check(dp, tp, pp)
    return {
        "tp": [[rank_of(k, d, j, dp, tp) for j in range(tp)]
               for k in range(pp) for d in range(dp)],
        "dp": [[rank_of(k, d, j, dp, tp) for d in range(dp)]
               for k in range(pp) for j in range(tp)],
        "pp": [[rank_of(k, d, j, dp, tp) for k in range(pp)]
               for d in range(dp) for j in range(tp)],
    }


def draw_mesh(dp: int, tp: int, pp: int = 1, gpus_per_node: int | None = None,
              kinds=KINDS, axes=None, title: str | None = None):
    """One panel per kind of group in `kinds`; returns the axes."""
    _check(dp, tp, pp)
    world = dp * tp * pp
    if gpus_per_node is not None and (gpus_per_node < 1 or world % gpus_per_node):
        raise ValueError(f"gpus_per_node must divide the world size {world}, "
                         f"got {gpus_per_node}")
    kinds = list(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"kinds must be among {KINDS}, got {bad}")
    if axes is None:
        width = max(4.0, 0.75 * pp * (tp + 0.6))
        _, axes = plt.subplots(len(kinds), 1, figsize=(width, (0.9 + 0.75 * dp) * len(kinds)),
                               squeeze=False)
        axes = axes[:, 0]
    groups = mesh_groups(dp, tp, pp)
    for ax, kind in zip(axes, kinds):
        group_of = {r: g for g, ranks in enumerate(groups[kind]) for r in ranks}
        colours = plt.get_cmap("tab10" if len(groups[kind]) <= 10 else "tab20").colors
        for r in range(world):
            k, d, j = coords(r, dp, tp)
            x, y = k * (tp + 0.6) + j, dp - 1 - d
            ax.add_patch(Rectangle((x, y), 0.92, 0.92, facecolor=colours[group_of[r] % len(colours)],
                                   edgecolor="black", lw=0.6))
            label = f"{r}" if gpus_per_node is None else f"{r}\nnode {r // gpus_per_node}"
            ax.text(x + 0.46, y + 0.46, label, ha="center", va="center",
                    fontsize=8 if gpus_per_node is None else 6.5)
        for k in range(pp):
            ax.text(k * (tp + 0.6) + tp / 2, dp + 0.15, f"stage {k}", ha="center",
                    fontsize=8)
        ax.set_xlim(-0.2, pp * (tp + 0.6) - 0.4)
        ax.set_ylim(-0.2, dp + 0.6)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([dp - 1 - d + 0.46 for d in range(dp)], [f"d={d}" for d in range(dp)],
                      fontsize=7)
        ax.set_title(f"{TITLES[kind]}: {len(groups[kind])} × {len(groups[kind][0])}",
                     fontsize=9)
        for side in ("top", "right", "bottom", "left"):
            ax.spines[side].set_visible(False)
    if title:
        axes[0].figure.suptitle(title, fontsize=10)
    return axes

"""The mesh picture's rank arithmetic: torch's row-major (pp, dp, tp) layout (the ranks
a DeviceMesh of that shape assigns), the groups hpclab's Mesh builds on 4 ranks, and one
coloured cell per rank and panel."""

import matplotlib.pyplot as plt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hpclab.cluster.spawn import run_local
from hpclab.parallel.mesh import Mesh
from hpclab.parallel.mesh_picture import coords, draw_mesh, mesh_groups, rank_of

pytestmark = [pytest.mark.unit_d]

DIMS = {"pp": 0, "dp": 1, "tp": 2}


def _torch_groups(dp, tp, pp):
    # DeviceMesh(mesh=arange(world).reshape(pp, dp, tp)): a group is a line along one dim
    grid = torch.arange(dp * tp * pp).reshape(pp, dp, tp)
    out = {}
    for kind, dim in DIMS.items():
        lines = grid.movedim(dim, -1).reshape(-1, grid.shape[dim])
        out[kind] = sorted(sorted(line.tolist()) for line in lines)
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4))
def test_groups_are_the_lines_of_a_row_major_pp_dp_tp_grid(dp, tp, pp):
    ours = mesh_groups(dp, tp, pp)
    assert {k: sorted(v) for k, v in ours.items()} == _torch_groups(dp, tp, pp)
    for r in range(dp * tp * pp):
        assert rank_of(*coords(r, dp, tp), dp, tp) == r
    for kind, size in (("tp", tp), ("dp", dp), ("pp", pp)):   # a partition of the ranks
        assert all(len(g) == size for g in ours[kind])
        assert sorted(r for g in ours[kind] for r in g) == list(range(dp * tp * pp))


LAYOUTS = [(2, 2, 1), (1, 2, 2), (2, 1, 2)]     # (dp, tp, pp) on 4 ranks


def _mesh_ranks(ctx):
    out = []
    for dp, tp, pp in LAYOUTS:
        mesh = Mesh(ctx, dp=dp, tp=tp, pp=pp)
        out.append({"tp": mesh.tp_ranks, "dp": mesh.dp_ranks, "pp": mesh.pp_ranks})
    return out


@pytest.mark.cluster
def test_groups_are_the_groups_of_hpclab_parallel_mesh():
    for rank, meshes in enumerate(run_local(_mesh_ranks, 4)):
        for (dp, tp, pp), held in zip(LAYOUTS, meshes):
            groups = mesh_groups(dp, tp, pp)
            for kind, ranks in held.items():
                assert ranks in groups[kind] and rank in ranks, (dp, tp, pp, kind)


def test_draw_colours_one_cell_per_rank_and_panel():
    axes = draw_mesh(dp=2, tp=2, pp=2, gpus_per_node=4)
    assert len(axes) == 3
    for ax, kind in zip(axes, ("tp", "dp", "pp")):
        cells = ax.patches
        assert len(cells) == 8
        colours = {}
        for cell, text in zip(cells, [t for t in ax.texts if "node" in t.get_text()]):
            colours.setdefault(cell.get_facecolor(), set()).add(int(text.get_text().split()[0]))
        assert sorted(sorted(g) for g in colours.values()) == sorted(mesh_groups(2, 2, 2)[kind])
    assert "node 1" in [t.get_text().split("\n")[1] for t in axes[0].texts if "\n" in t.get_text()]
    plt.close("all")


def test_errors_name_the_value():
    with pytest.raises(ValueError, match="tp must be a positive int, got 0"):
        mesh_groups(dp=2, tp=0)
    with pytest.raises(ValueError, match="gpus_per_node must divide the world size 8, got 3"):
        draw_mesh(dp=2, tp=2, pp=2, gpus_per_node=3)

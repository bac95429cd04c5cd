"""A DP × TP mesh on 4 ranks: its groups are torch DeviceMesh's rows and columns (and, with
a third axis, PP2 × DP2 and PP2 × TP2 the pillars of init_device_mesh((pp, dp, tp))), and
the tiny transformer trained DP2 × TP2 (with and without sequence parallel) follows
single-process training on the whole batch (AdamW, float64)."""

import copy

import pytest
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from hpclab.cluster.spawn import run_local
from hpclab.parallel.mesh import Mesh
from hpclab.parallel.tensor_parallel import gather_parameters
from hpclab.parallel.tp_transformer import ParallelTransformer
from hpclab.problems.transformer import lm_loss, tiny_transformer
from hpclab.train import train_step

pytestmark = [pytest.mark.unit_d, pytest.mark.cluster]   # run_local: process groups

STEPS = 4


def _groups(ctx):
    mesh = Mesh(ctx, dp=2, tp=2)
    torch_mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    ours = (sorted(dist.get_process_group_ranks(mesh.tp.group)),
            sorted(dist.get_process_group_ranks(mesh.dp.group)))
    theirs = (sorted(dist.get_process_group_ranks(torch_mesh.get_group("tp"))),
              sorted(dist.get_process_group_ranks(torch_mesh.get_group("dp"))))
    assert ours == theirs == (mesh.tp_ranks, mesh.dp_ranks), (ours, theirs)
    assert (mesh.dp.rank, mesh.tp.rank) == tuple(torch_mesh.get_coordinate())
    assert mesh.pp.world_size == 1 and mesh.pp_ranks == [ctx.rank]
    for pp, dp, tp in [(2, 2, 1), (2, 1, 2)]:
        _same_as_device_mesh(Mesh(ctx, dp=dp, tp=tp, pp=pp), (pp, dp, tp))
    return ours


def _same_as_device_mesh(mesh, shape):
    """Our three groups and this rank's coordinates are init_device_mesh(shape)'s."""
    torch_mesh = init_device_mesh("cpu", shape, mesh_dim_names=("pp", "dp", "tp"))
    for axis in ("pp", "dp", "tp"):
        ours = sorted(dist.get_process_group_ranks(getattr(mesh, axis).group))
        theirs = sorted(dist.get_process_group_ranks(torch_mesh.get_group(axis)))
        assert ours == theirs == getattr(mesh, f"{axis}_ranks"), (axis, shape, ours, theirs)
    assert (mesh.pp.rank, mesh.dp.rank, mesh.tp.rank) == tuple(torch_mesh.get_coordinate())


def test_mesh_groups_are_device_meshs_rows_and_columns():
    assert run_local(_groups, 4) == [([0, 1], [0, 2]), ([0, 1], [1, 3]),
                                     ([2, 3], [0, 2]), ([2, 3], [1, 3])]


def _batches():
    g = torch.Generator().manual_seed(5)
    return [(torch.randint(0, 11, (4, 8), generator=g),
             torch.randint(0, 11, (4, 8), generator=g)) for _ in range(STEPS)]


def _dp_tp(ctx, sequence_parallel):
    model = tiny_transformer(11, block_size=8, d_model=16, n_heads=4).double()
    reference = copy.deepcopy(model)
    opt = torch.optim.AdamW(reference.parameters(), lr=1e-2)
    ref = [train_step(reference, opt, b, lm_loss, step=s).loss
           for s, b in enumerate(_batches())]
    mesh = Mesh(ctx, dp=2, tp=2)
    parallel = ParallelTransformer(model, mesh.tp, sequence_parallel=sequence_parallel)
    opt = torch.optim.AdamW(parallel.parameters(), lr=1e-2)
    losses = [train_step(parallel, opt, mesh.shard(b), lm_loss, step=s,
                         after_backward=mesh.after_backward, group=mesh.dp.group,
                         rank=mesh.dp.rank, world_size=mesh.dp.world_size).loss
              for s, b in enumerate(_batches())]
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref), rtol=1e-9, atol=0)
    final = gather_parameters(parallel, mesh.tp)
    for name, p in reference.named_parameters():
        torch.testing.assert_close(final[name], p.detach(), rtol=1e-8, atol=1e-10, msg=name)
    return losses


@pytest.mark.parametrize("sequence_parallel", [False, True], ids=["dp2xtp2", "dp2xtp2+sp"])
def test_dp2_tp2_trains_like_a_single_process(sequence_parallel):
    curves = run_local(_dp_tp, 4, sequence_parallel, timeout=120)
    assert all(c == curves[0] for c in curves) and curves[0][-1] < curves[0][0]


def test_dp_times_tp_must_be_the_world_size():
    class Ctx:
        rank, world_size = 0, 4
    with pytest.raises(ValueError, match="dp × tp must equal the world size 4"):
        Mesh(Ctx(), dp=3, tp=2)
    with pytest.raises(ValueError, match="pp × dp × tp must equal the world size 4, got "
                                         "dp=2, tp=2, pp=2"):
        Mesh(Ctx(), dp=2, tp=2, pp=2)

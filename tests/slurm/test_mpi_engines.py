"""hpclab.connect(engines="mpi"): engines started by a real `mpiexec` (Debian's Open MPI).

Each engine's MPI rank (mpi4py) and its torch.distributed rank describe the same p
processes; an all-reduce through torch.distributed is checked against the closed form.
`.ci/slurm/mpi-deps` installs openmpi-bin and mpi4py when they are missing.
"""

from __future__ import annotations

import pytest

import hpclab
from hpclab.cluster.errors import ClusterError
from hpclab.cluster.mpi import MPILauncher

pytestmark = [pytest.mark.unit_a, pytest.mark.cluster, pytest.mark.slow]



def ranks(ctx):
    import torch
    import torch.distributed as dist
    from mpi4py import MPI
    t = torch.tensor([float(ctx.rank + 1)])
    dist.all_reduce(t)
    return {"mpi_rank": MPI.COMM_WORLD.Get_rank(), "mpi_size": MPI.COMM_WORLD.Get_size(),
            "rank": ctx.rank, "sum": t.item()}


def test_two_engines_under_mpiexec(mpi):
    with hpclab.connect(2, engines="mpi", timeout=120) as cluster:
        out = cluster.run(ranks)
    assert [r["sum"] for r in out] == [3.0, 3.0]
    assert sorted(r["mpi_rank"] for r in out) == [0, 1]
    assert {r["mpi_size"] for r in out} == {2}


def test_missing_mpiexec_says_what_to_install():
    with pytest.raises(ClusterError, match="apt-get install openmpi-bin"):
        MPILauncher(mpiexec="/nonexistent/mpiexec").preflight(2)
    with pytest.raises(TypeError, match="hosts must be a list"):
        MPILauncher(hosts="node1:4")

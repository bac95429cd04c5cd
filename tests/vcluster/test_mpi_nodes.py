"""MPI engines across nodes: `hpclab.connect(engines="mpi", nodes=2)` on the virtual cluster.

Slurm starts the MPI program itself (`srun --mpi=pmix`, Slurm's PMIx plugin wiring up
Debian's Open MPI), one engine per node: the engines' hostnames differ, their MPI ranks
are 0..p-1 in one MPI_COMM_WORLD, and an MPI all-reduce (mpi4py, Open MPI's TCP transport
across the shaped link) equals the sum computed here in one process.
"""

from __future__ import annotations

import pytest

import hpclab
from hpclab.cluster.mpi import MPILauncher

pytestmark = [pytest.mark.unit_a]



def mpi_all_reduce(ctx):
    import socket

    import numpy as np
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    x = np.arange(1000, dtype=np.float64) * (comm.Get_rank() + 1)
    total = np.empty_like(x)
    comm.Allreduce(x, total, op=MPI.SUM)
    return {"host": socket.gethostname(), "mpi_rank": comm.Get_rank(),
            "mpi_size": comm.Get_size(), "sum": total.tolist()}


@pytest.mark.timeout(300)
@pytest.mark.slurm
@pytest.mark.vcluster
@pytest.mark.cluster
def test_mpi_engines_span_nodes_and_all_reduce(vcluster, mpi):
    import numpy as np
    with hpclab.connect(2, engines="mpi", nodes=2, timeout=120) as cluster:
        out = cluster.run(mpi_all_reduce)
    assert sorted(o["host"] for o in out) == sorted(n["name"] for n in vcluster.nodes)
    assert sorted(o["mpi_rank"] for o in out) == [0, 1]
    assert {o["mpi_size"] for o in out} == {2}
    expected = (np.arange(1000, dtype=np.float64) * (1 + 2)).tolist()   # ranks 0, 1 → ×1, ×2
    assert all(o["sum"] == expected for o in out)


def test_srun_line_and_bad_requests():
    assert MPILauncher(nodes=2).srun_args(4) == [
        "--mpi=pmix", "--nodes=2", "--ntasks-per-node=2", "--job-name=hpclab-mpi-engines",
        "--export=ALL"]
    assert MPILauncher(nodes=1, pmi="pmi2").srun_args(2)[0] == "--mpi=pmi2"
    with pytest.raises(ValueError, match="spread evenly over nodes=2"):
        MPILauncher(nodes=2).preflight(3)
    with pytest.raises(ValueError, match="not both"):
        MPILauncher(nodes=2, hosts=["node1:2"])
    with pytest.raises(ValueError, match="nodes must be an int >= 0"):
        MPILauncher(nodes=-1)

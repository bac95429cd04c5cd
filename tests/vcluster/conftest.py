"""A real virtual cluster for this directory's tests (module fixture `vcluster`).

`hpclab.cluster.vcluster.up` makes 2 nodes (network + UTS namespaces, one slurmd each) on
a bridge with 1 Gbit/s links, in a state directory of the test's own; the fixture exports
its SLURM_CONF and always runs `down` at the end, even when a test failed (`vc.running`). Needs root,
iproute2, Slurm and munge (`bash .ci/system-deps`), as the slurm tier does.
"""

from __future__ import annotations

import pytest

from hpclab.cluster import vcluster as vc

LINK = "1gbit"


@pytest.fixture(scope="module")
def vcluster(tmp_path_factory):
    """A running 2-node VCluster (n1, n2; 2 CPUs each; 1 Gbit/s links), SLURM_CONF set."""
    state = tmp_path_factory.mktemp("vcluster")
    with vc.running(state, nodes=2, cpus_per_node=2, link=LINK) as cluster:
        yield cluster

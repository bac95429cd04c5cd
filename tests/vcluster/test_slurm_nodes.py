"""The slurm tier on two nodes: `hpclab.connect(engines="slurm", nodes=2)` on the virtual
cluster puts engines on n1 and n2, numbers the ranks node by node, gives every rank its
node-local rank, and a torch.distributed (gloo) all-reduce crosses the shaped link.
`hpclab doctor` recognises the cluster.
"""

from __future__ import annotations

import os
import re

import pytest
import torch

import hpclab
from hpclab.cluster import doctor

pytestmark = [pytest.mark.slurm, pytest.mark.vcluster, pytest.mark.cluster, pytest.mark.unit_a]


def where(ctx):
    import socket

    import torch.distributed as dist
    t = torch.arange(5, dtype=torch.float64) * (ctx.rank + 1)
    dist.all_reduce(t)
    return {"host": socket.gethostname(), "rank": ctx.rank, "node": ctx.node,
            "local_rank": ctx.local_rank, "ranks_per_node": ctx.ranks_per_node,
            "ifname": os.environ.get("GLOO_SOCKET_IFNAME"), "sum": t.tolist(),
            "env": (os.environ["LOCAL_RANK"], os.environ["LOCAL_WORLD_SIZE"],
                    os.environ["GROUP_RANK"])}


@pytest.fixture(scope="module")
def engines(vcluster):
    with hpclab.connect(n=4, engines="slurm", nodes=2, time="10", timeout=120) as cluster:
        yield cluster


def test_engines_on_both_nodes_ranks_ordered_by_node(vcluster, engines):
    out = engines.run(where)
    assert [o["host"] for o in out] == ["n1", "n1", "n2", "n2"]
    assert [o["rank"] for o in out] == [0, 1, 2, 3]
    assert [(o["node"], o["local_rank"], o["ranks_per_node"]) for o in out] == \
        [(0, 0, 2), (0, 1, 2), (1, 0, 2), (1, 1, 2)]
    assert [o["env"] for o in out] == [("0", "2", "0"), ("1", "2", "0"), ("0", "2", "1"),
                                       ("1", "2", "1")]
    assert {o["ifname"] for o in out} == {"eth0"}     # the node's own interface
    # the trusted reference: the same sum computed here, in one process
    expected = (torch.arange(5, dtype=torch.float64) * sum(r + 1 for r in range(4))).tolist()
    assert all(o["sum"] == expected for o in out)


def test_controller_listens_on_the_bridge(vcluster, engines):
    # the address slurm.conf gives slurmctld (SlurmctldHost=name(address)): the nodes reach it
    assert engines._ipp_cluster.controller_ip == vcluster.bridge_ip
    assert {f["ip"] for f in engines.facts} == {n["ip"] for n in vcluster.nodes}
    assert engines.rendezvous.startswith(f"tcp://{vcluster.nodes[0]['ip']}:")


def test_doctor_recognises_the_virtual_cluster(vcluster):
    check = doctor.check_vcluster(vcluster.state_dir)
    assert check.status == "PASS", check.line()
    assert re.search(r"2 nodes \(n1 10.79.0.1 (idle|allocated|mixed), n2 10.79.0.2", check.detail)
    assert "1Gbit" in check.detail
    slurm = doctor.check_slurm()
    assert slurm.status == "PASS", slurm.line()


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
from hpclab.bench import hierarchical as bench
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



# --- topology-aware collectives across the shaped link -------------------------------------
def hierarchical_against_torch(ctx):
    import torch.distributed as dist

    from hpclab import comm
    worst = 0.0
    for n in (1, 5, 1001, (1 << 18) + 3):
        g = torch.Generator().manual_seed(n + ctx.rank)
        x = torch.randn(n, generator=g, dtype=torch.float64)
        expected = x.clone()
        dist.all_reduce(expected)
        comm.all_reduce(x, algorithm="hierarchical")
        worst = max(worst, (x - expected).abs().max().item())
    return worst


def test_hierarchical_all_reduce_across_nodes_matches_torch(engines):
    assert max(engines.run(hierarchical_against_torch)) < 1e-12


def ddp_on_nodes(ctx):
    from torch import nn

    import hpclab.comm
    from hpclab.parallel.ddp import DistributedDataParallel
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(512, 2048), nn.Linear(2048, 3))     # one 4 MiB bucket
    model = DistributedDataParallel(net, algorithm="auto", bucket_cap_mb=25)
    g = torch.Generator().manual_seed(ctx.rank)
    x, y = torch.randn(8, 512, generator=g), torch.randn(8, 3, generator=g)
    nn.functional.mse_loss(model(x), y).backward()
    grads = [p.grad.clone() for p in net.parameters()]
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(512, 2048), nn.Linear(2048, 3))
    nn.functional.mse_loss(ref(x), y).backward()
    error = 0.0
    for mine, p in zip(grads, ref.parameters()):
        torch.distributed.all_reduce(p.grad)
        error = max(error, (mine - p.grad / ctx.world_size).abs().max().item())
    picks = [hpclab.comm.best_algorithm(b.nbytes, ctx.world_size, model.costs)
             for b in model.buckets]
    return (type(model.costs).__name__, model.costs.ranks_per_node, model.costs.alpha_beta(),
            model.bucket_algorithms() == picks, error)


def test_calibration_sees_two_link_classes_and_ddp_follows_the_model(engines):
    out = engines.run(ddp_on_nodes)
    kind, k, fitted, same_path, _ = out[0]
    assert (kind, k) == ("TwoLevel", 2)
    beta_intra, beta_inter = fitted["intra"][1], fitted["inter"][1]
    # the shaped link is the slow class, and carries about 1 Gbit/s = 0.125 GB/s (only the
    # machine's load can make it slower, nothing faster)
    assert beta_inter > beta_intra
    assert 0.04 < 1e-9 / beta_inter < 0.2, f"{1e-9 / beta_inter:.3f} GB/s"
    assert same_path            # DDP's buckets run what the two-level model picks
    assert all(o[:4] == out[0][:4] for o in out)   # every rank chose the same
    assert max(o[4] for o in out) < 1e-5


def test_the_hierarchical_bench_runs_on_the_nodes(engines):
    out = engines.run(bench.rounds, [4 << 20], 3, 2)
    assert all(o[0]["rows"][0]["auto"] == out[0][0]["rows"][0]["auto"] for o in out)
    measured, predicted, _ = bench.speedups(out[0][0]["rows"][0])
    assert measured > 0 and predicted > 0          # the figures; no timing assertion
    text = bench.table(out[0][0])
    assert "two link classes, 2 ranks per node" in text and "   4 MiB" in text
    over = bench.spread(out[0])
    assert "over 2 rounds" in over and re.search(r"4 MiB .* [012] of 2", over)
    print(text, over, sep="\n")                   # the CI log keeps the figures

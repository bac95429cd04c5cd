"""cluster.run / run_async / info on one shared 2-engine cluster (real engines, real gloo).

The last test kills an engine and restarts the cluster, so it stays last in this file.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch
import torch.distributed as dist

from hpclab.cluster import RankError, RunHandle

pytestmark = [pytest.mark.unit_a, pytest.mark.cluster]

MARGIN_S = 10.0   # scheduling slack on a loaded 2-core machine; far below a "hang"


def whoami(ctx, tag, *, scale=1):
    return {"tag": tag, "rank": ctx.rank * scale, "world_size": ctx.world_size,
            "local_rank": ctx.local_rank, "device": str(ctx.device), "backend": ctx.backend,
            "pid": os.getpid(), "dist_rank": dist.get_rank(),
            "master": os.environ["MASTER_ADDR"]}


def test_every_rank_gets_its_context_in_rank_order(cluster2):
    out = cluster2.run(whoami, "x", scale=10)
    assert [o["rank"] for o in out] == [0, 10]
    assert [o["dist_rank"] for o in out] == [0, 1]          # ctx agrees with torch.distributed
    assert {o["world_size"] for o in out} == {2}
    assert [o["local_rank"] for o in out] == [0, 1]         # both on this host
    assert {o["device"] for o in out} == {"cpu"} and {o["backend"] for o in out} == {"gloo"}
    assert [o["pid"] for o in out] == cluster2.pids
    assert cluster2.world_size == 2 and len(cluster2.hosts) == 2


def test_engines_on_one_host_share_its_cpus_between_their_torch_threads(cluster2):
    import os

    cpus = len(os.sched_getaffinity(0))
    threads = cluster2.run(lambda ctx: __import__("torch").get_num_threads())
    # both engines run on this host: no more threads in all than the CPUs we may use
    assert threads == [max(1, cpus // 2)] * 2


def test_rendezvous_is_rank0s_outward_ip_not_localhost(cluster2):
    masters = {o["master"] for o in cluster2.run(whoami, "x")}
    assert len(masters) == 1
    master = masters.pop()
    assert not master.startswith("127."), master
    assert cluster2.rendezvous.startswith(f"tcp://{master}:")


def test_all_reduce_through_run_matches_the_sum_of_the_inputs(cluster2):
    def step(ctx, n):
        g = torch.Generator().manual_seed(ctx.rank)
        x = torch.randn(n, generator=g, dtype=torch.float64)
        y = x.clone()
        dist.all_reduce(y)
        return x, y

    out = cluster2.run(step, 1000)
    expected = sum(x for x, _ in out)
    for _, y in out:
        torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)


def test_run_async_returns_at_once_and_gets_results_by_rank(cluster2):
    def slow(ctx, delay):
        time.sleep(delay)
        return ctx.rank ** 2 + 1

    handle = cluster2.run_async(slow, 1.0)
    assert isinstance(handle, RunHandle)
    assert not handle.ready()
    assert handle.wait(timeout=30)
    assert handle.ready()
    assert handle.get(timeout=5) == [1, 2]


def test_info_table_lists_every_rank(cluster2):
    table = cluster2.info()
    assert table.column("rank") == [0, 1]
    assert table.column("pid") == cluster2.pids
    assert table.column("status") == ["idle", "idle"]
    assert table.column("torch") == [torch.__version__] * 2
    assert all(r > 0 for r in table.column("rss_gb"))
    assert "rank" in repr(table) and "<table>" in table._repr_html_()


def test_an_exception_on_one_rank_is_a_rank_error_naming_it(cluster2):
    def fails_on_1(ctx):
        if ctx.rank == 1:
            raise ValueError("bad shard")
        return ctx.rank

    with pytest.raises(RankError, match=r"rank 1 \(pid \d+ on host .*\) raised ValueError: "
                                        "bad shard") as info:
        cluster2.run(fails_on_1)
    assert info.value.rank == 1 and info.value.pid == cluster2.pids[1]
    assert "fails_on_1" in info.value.remote_traceback
    assert cluster2.run(lambda ctx: ctx.rank) == [0, 1]       # the cluster is still usable


def test_a_call_past_its_timeout_raises_and_the_cluster_recovers(cluster2):
    t0 = time.monotonic()
    with pytest.raises(RankError, match=r"did not answer within 1\.5 s") as info:
        cluster2.run(lambda ctx: time.sleep(60), timeout=1.5)
    assert time.monotonic() - t0 < 1.5 + MARGIN_S
    assert info.value.rank == 0 and info.value.host == cluster2.hosts[0]
    # the sleeping ranks were interrupted, so the next call runs at once
    assert cluster2.run(lambda ctx: ctx.rank + 100, timeout=30) == [100, 101]


def test_a_killed_idle_engine_is_named_then_restart_gives_fresh_engines(cluster2):
    old = cluster2.pids
    os.kill(old[1], signal.SIGKILL)
    with pytest.raises(RankError, match=rf"rank 1 \(pid {old[1]} on host .*\) died"):
        cluster2.run(lambda ctx: ctx.rank, timeout=30)
    assert cluster2.info().column("status")[1] == "dead"
    cluster2.restart()
    assert cluster2.world_size == 2 and set(cluster2.pids).isdisjoint(old)
    out = cluster2.run(lambda ctx: (dist.all_reduce(t := torch.ones(3)), t.sum().item())[1])
    assert out == [6.0, 6.0]

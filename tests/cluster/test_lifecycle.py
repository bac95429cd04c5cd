"""Starting, attaching, failing and stopping: world sizes 1 and 4, SIGKILL, no orphans.

Each test starts its own engines (it breaks or inspects the cluster's processes) and
counts this session's ipyparallel processes before and after.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest
import torch
import torch.distributed as dist

import hpclab
from hpclab.cluster import ClusterError, ClusterTimeout, RankError

pytestmark = [pytest.mark.unit_a, pytest.mark.cluster]

TIMEOUT_S = 30.0


def wait_gone(pids, timeout=10.0) -> set[int]:
    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if psutil.pid_exists(p)
                 and psutil.Process(p).status() != psutil.STATUS_ZOMBIE}
        time.sleep(0.1)
    return alive


def test_engines_not_registering_in_time_raise_cluster_timeout_and_leave_nothing(ipp_processes):
    before = ipp_processes()
    t0 = time.monotonic()
    # an engine needs seconds just to import ipyparallel, so 0.3 s can never be enough
    with pytest.raises(ClusterTimeout, match=r"of 2 engines registered within 0\.3 s.*"
                                             "did not register"):
        hpclab.connect(n=2, timeout=0.3)
    assert issubclass(ClusterTimeout, TimeoutError)
    assert time.monotonic() - t0 < 0.3 + 30     # stopping what started is bounded too
    assert wait_gone(ipp_processes() - before) == set()


def test_four_ranks_all_reduce_then_sigkill_mid_collective_names_the_rank(ipp_processes):
    before = ipp_processes()
    cluster = hpclab.connect(n=4, timeout=TIMEOUT_S)
    try:
        ours = ipp_processes() - before
        # controller + 4 engines + 4 nannies at least
        assert len(ours) >= 9
        assert cluster.run(lambda ctx: (ctx.rank, ctx.world_size)) == [(r, 4) for r in range(4)]

        def reduce_ranks(ctx):
            t = torch.tensor([ctx.rank + 1.0, 2.0 ** ctx.rank])
            dist.all_reduce(t)
            return t

        for t in cluster.run(reduce_ranks):
            torch.testing.assert_close(t, torch.tensor([10.0, 15.0]))

        def collective_waiting_for_rank_2(ctx):
            if ctx.rank == 2:
                time.sleep(120)            # the others block in all_reduce until it dies
            t = torch.ones(4)
            dist.all_reduce(t)
            return t

        victim = cluster.pids[2]
        handle = cluster.run_async(collective_waiting_for_rank_2)
        time.sleep(2.0)
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(RankError, match=rf"rank 2 \(pid {victim} on host .*\) died") as err:
            handle.get()
        assert time.monotonic() - t0 < TIMEOUT_S
        assert err.value.rank == 2 and err.value.pid == victim
        assert "restart" in str(err.value)
    finally:
        cluster.close()
    cluster.close()                                   # closing twice is harmless
    with pytest.raises(ClusterError, match="this cluster is closed"):
        cluster.run(lambda ctx: ctx.rank)
    assert wait_gone(ours) == set(), "processes of the closed cluster are still alive"
    assert wait_gone(ipp_processes() - before) == set()


@pytest.fixture(scope="module")
def ipcluster_1(ipp_processes):
    """One engine started by plain ipyparallel (as `ipcluster start -n 1` would)."""
    import ipyparallel as ipp
    before = ipp_processes()
    cluster = ipp.Cluster(n=1, cluster_id=f"hpclab-test-{os.getpid()}", log_level=40)
    cluster.start_cluster_sync()
    try:
        yield cluster
    finally:
        cluster.stop_cluster_sync()
        assert wait_gone(ipp_processes() - before) == set()


def test_attach_by_profile_and_cluster_id_world_size_1(ipcluster_1):
    with hpclab.connect(profile="default", cluster_id=ipcluster_1.cluster_id,
                        timeout=TIMEOUT_S) as cluster:
        assert not cluster.owns_engines and cluster.world_size == 1

        def solo(ctx):
            t = torch.arange(3.0)
            dist.all_reduce(t)
            return ctx.rank, ctx.world_size, t

        rank, p, t = cluster.run(solo)[0]
        assert (rank, p) == (0, 1)
        torch.testing.assert_close(t, torch.arange(3.0))

        def fails(ctx):
            raise ValueError("alone")

        # one engine: the error is the remote one, not ipyparallel's wrapper around it
        with pytest.raises(RankError, match=r"rank 0 \(pid \d+ on host .*\) raised "
                                            "ValueError: alone"):
            cluster.run(fails)
        pid = cluster.pids[0]
    # closing an attached cluster leaves its engine running, without our process group
    assert psutil.pid_exists(pid)
    client = ipcluster_1.connect_client_sync()
    try:
        assert client[:].apply_sync(lambda: __import__("torch").distributed.is_initialized()) \
            == [False]
    finally:
        client.close()


def test_attach_by_connection_file(ipcluster_1):
    conn = Path(ipcluster_1.profile_dir, "security",
                f"ipcontroller-{ipcluster_1.cluster_id}-client.json")
    assert conn.exists()
    conn.chmod(0o644)   # a key readable by others: connect makes it private first
    with hpclab.connect(connection_file=str(conn), timeout=TIMEOUT_S) as cluster:
        assert cluster.run(lambda ctx: ctx.world_size) == [1]
        assert "attached" in repr(cluster)
    assert conn.stat().st_mode & 0o777 == 0o600

"""The rendezvous from Slurm's and torchrun's environment; the hostlist parser against
`scontrol show hostnames` (Slurm's own expansion, the trusted reference)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpclab.cluster import rendezvous as rv

pytestmark = [pytest.mark.unit_a]

HOSTLISTS = ["n1", "n[1-2]", "n[1-3],m[01-02,7],x", "r[1-2]c[3-4]", "n[08-11]",
             "node[1,3-4],login", "rack1-n[1-2]", "gpu[008-010]", "a,b,c[9-10]"]


@pytest.fixture(scope="module")
def scontrol(tmp_path_factory):
    """`scontrol show hostnames` with a minimal slurm.conf: it expands without a controller."""
    if shutil.which("scontrol") is None:
        pytest.fail("scontrol is not installed: `bash .ci/system-deps` installs Slurm")
    conf = tmp_path_factory.mktemp("slurm") / "slurm.conf"
    conf.write_text("ClusterName=t\nSlurmctldHost=localhost\nNodeName=a CPUs=1\n"
                    "PartitionName=p Nodes=a\n")

    def expand(hostlist: str) -> list[str]:
        out = subprocess.run(["scontrol", "show", "hostnames", hostlist], capture_output=True,
                             text=True, timeout=10, check=True, env={"SLURM_CONF": str(conf)})
        return out.stdout.split()
    return expand


@pytest.mark.slurm
@pytest.mark.parametrize("hostlist", HOSTLISTS)
def test_expand_hostlist_matches_scontrol(scontrol, hostlist):
    assert rv.expand_hostlist(hostlist) == scontrol(hostlist)


_range = st.tuples(st.integers(0, 12), st.integers(0, 4), st.integers(1, 3)).map(
    lambda t: f"{t[0]:0{t[2]}d}" + (f"-{t[0] + t[1]:0{t[2]}d}" if t[1] else ""))
_host = st.tuples(st.sampled_from(["n", "gpu", "r1c", "node-"]),
                  st.lists(_range, min_size=0, max_size=3)).map(
    lambda t: t[0] + (f"[{','.join(t[1])}]" if t[1] else "0"))


@pytest.mark.slurm
@settings(max_examples=40, deadline=None)
@given(st.lists(_host, min_size=1, max_size=3, unique=True))
def test_random_hostlists_match_scontrol(scontrol, hosts):
    hostlist = ",".join(hosts)
    assert rv.expand_hostlist(hostlist) == scontrol(hostlist)


@pytest.mark.parametrize("bad", ["n[1-", "n[a-b]", "n[3-1]", "n]1["])
def test_bad_hostlists_name_the_problem(bad):
    with pytest.raises(ValueError, match="hostlist"):
        rv.expand_hostlist(bad)


def test_tasks_per_node():
    assert rv.tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert rv.tasks_per_node("4") == [4]
    with pytest.raises(ValueError, match="2x2"):
        rv.tasks_per_node("2x2")


SLURM = {"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
         "SLURM_JOB_NODELIST": "127.0.0.[1-2]", "SLURM_STEP_TASKS_PER_NODE": "2(x2)"}


def test_from_slurm():
    r = rv.from_slurm(SLURM)
    assert (r.rank, r.world_size, r.local_rank, r.node, r.ranks_per_node) == (3, 4, 1, 1, 2)
    assert (r.master_addr, r.master_port, r.launcher) == ("127.0.0.1", 29500, "slurm")
    assert r.env() == {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "GROUP_RANK": "1",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500",
                       "LOCAL_WORLD_SIZE": "2"}
    uneven = rv.from_slurm({**SLURM, "SLURM_STEP_TASKS_PER_NODE": "3,1", "MASTER_PORT": "1234"})
    assert (uneven.ranks_per_node, uneven.master_port) == (0, 1234)


def test_torchrun_wins_under_srun():
    env = {**SLURM, "RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "0", "GROUP_RANK": "1",
           "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29400"}
    r = rv.from_env(env)
    assert (r.launcher, r.rank, r.local_rank, r.node, r.master_addr, r.master_port) == \
        ("torchrun", 2, 0, 1, "10.0.0.1", 29400)


@pytest.mark.parametrize("missing", ["SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
                                     "SLURM_NODEID", "SLURM_JOB_NODELIST"])
def test_missing_slurm_variable_is_named(missing):
    env = {k: v for k, v in SLURM.items() if k != missing}
    with pytest.raises(rv.RendezvousError, match=missing):
        rv.from_slurm(env)


@pytest.mark.parametrize("missing", ["RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                     "MASTER_PORT"])
def test_missing_torchrun_variable_is_named(missing):
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": "29400"}
    del env[missing]
    with pytest.raises(rv.RendezvousError, match=missing):
        rv.from_torchrun(env)


def test_no_launcher_at_all():
    with pytest.raises(rv.RendezvousError, match="RANK.*SLURM_PROCID"):
        rv.from_env({})

"""JupyterHub on the virtual cluster: batchspawner puts a student's JupyterLab on a node.

The Hub (course/deploy/jupyterhub_config.py, as in tests/slurm/test_jupyterhub.py) runs on
the host, like a login node: its API listens on the bridge address 10.79.0.254, the only
address of the host the nodes can reach (HPCLAB_HUB_INTERNAL_IP, which is also
hub_connect_ip). The student is a real Unix user; the server's Slurm job runs on n1 or n2,
inside that node's network namespace, reports its port to the Hub API across the bridge,
and the Hub's proxy reaches it at the node's address. A notebook cell executed through the
proxy reports the node's hostname, the job and the student's uid; stopping the server
cancels the job.

The nodes' names are not in DNS (n1, n2 exist only in the cluster's slurm.conf), so the Hub
is told the node addresses the way batchspawner offers for such sites: a pattern that maps
squeue's exec host to the address (state_exechost_re / state_exechost_exp).
"""

from __future__ import annotations

import pwd
import tempfile
from pathlib import Path

import pytest

from hpclab.cluster import vcluster as vc
from tests.slurm.test_jupyterhub import execute, made_students, running_hub, spawn, stop, user_jobs

pytestmark = [pytest.mark.slurm, pytest.mark.vcluster, pytest.mark.cluster, pytest.mark.unit_a]

STUDENT = "hpclab-ada"
CELL = """
import os, socket, torch
print("host", socket.gethostname(), "job", os.environ.get("SLURM_JOB_ID"), "uid", os.getuid(),
      "sum", torch.arange(4.0).sum().item())
"""


@pytest.fixture(scope="module")
def vcluster():
    """The 2-node cluster of conftest.py, in a state directory students can read: their
    sbatch and squeue read its slurm.conf, as they read /etc/slurm on a real cluster (the
    fixture's own lies under pytest's private /tmp/pytest-of-root)."""
    state = Path(tempfile.mkdtemp(prefix="hpclab-vcluster-hub-"))
    state.chmod(0o755)
    with vc.running(state, nodes=2, cpus_per_node=2, link="1gbit") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def hub(vcluster):
    prefix = vcluster.nodes[0]["ip"].rsplit(".", 1)[0]            # 10.79.0
    # squeue's '%T %B' gives 'RUNNING n2': node n<i> is at <prefix>.<i> (vcluster.py)
    nodes = (f"c.SlurmSpawner.state_exechost_re = r'\\s+n(\\d+)$'\n"
             f"c.SlurmSpawner.state_exechost_exp = r'{prefix}.\\1'\n")
    with made_students((STUDENT,)) as students, \
            running_hub(students, vcluster.bridge_ip, extra_config=nodes) as h:
        yield h


@pytest.mark.timeout(400)   # spawn ≤ 130 s + cell ≤ 90 s + stop ≤ 120 s
def test_batchspawner_puts_the_server_on_a_node(vcluster, hub):
    spawn(hub, (STUDENT,))
    try:
        server_jobs = user_jobs(STUDENT)
        assert len(server_jobs) == 1 and " RUNNING " in server_jobs[0], server_jobs
        job_id = server_jobs[0].split()[0]
        names = {n["name"] for n in vcluster.nodes}
        out = execute(hub, CELL, user=STUDENT)
        assert out["error"] is None and out["status"] == "ok", (out, hub.log_tail())
        words = out["stdout"].split()
        assert words[words.index("host") + 1] in names           # on a node, not the host
        assert words[words.index("job") + 1] == job_id
        assert int(words[words.index("uid") + 1]) == pwd.getpwnam(STUDENT).pw_uid
        assert words[words.index("sum") + 1] == "6.0"
    finally:
        stop(hub, (STUDENT,))

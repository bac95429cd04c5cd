"""Nodes for the length of a with-block: a virtual cluster with Slurm engines on it or, where
one cannot come up, forked local processes numbered as nodes (lectures C2 and C3).

    with vcluster_session.nodes(2, ranks_per_node=2, link="1gbit") as where:
        print(where.description)     # "4 Slurm engines on n1, n2, 1gbit links" or why not
        out = where.run(fn, *args)   # fn(ctx, *args) on every rank, the results by rank

The virtual cluster (hpclab/cluster/vcluster.py: network namespaces as nodes, one slurmd
each, tc-shaped links) is made in a fresh state directory of the block's own, so its record
never meets that of `hpclab vcluster up` or of the tests' fixture, and `down` runs when the
block ends, however it ends (an error in `fn`, an interrupted kernel). It needs root,
iproute2, util-linux, Slurm and munge (`bash .ci/system-deps`, as CI does); without them,
or while another virtual cluster holds the machine's names, `where.virtual` is False,
`where.description` says why, and `run` uses `run_local(..., ranks_per_node=k)`: the same
ranks and node numbering, but every link is loopback (one link class).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import hpclab
from hpclab.cluster import vcluster
from hpclab.cluster.spawn import run_local
from hpclab.cluster.vcluster_net import VClusterError


@dataclass
class Nodes:
    """Where the block's ranks run: `run(fn, *args)` calls fn(ctx, *args) on every rank."""

    world_size: int
    ranks_per_node: int
    virtual: bool
    description: str
    timeout: float
    cluster: object = None     # the hpclab Cluster on the virtual nodes, None when local

    def run(self, fn, *args, timeout: float | None = None):
        limit = timeout or self.timeout
        if self.cluster is not None:
            return self.cluster.run(fn, *args, timeout=limit)
        return run_local(fn, self.world_size, *args, timeout=limit,
                         ranks_per_node=self.ranks_per_node)


@contextmanager
def nodes(count: int = 2, ranks_per_node: int = 2, link: str = "1gbit",
          timeout: float = 120.0) -> Iterator[Nodes]:
    """`count` nodes of `ranks_per_node` ranks, joined by links of rate `link`."""
    p = count * ranks_per_node
    state = Path(tempfile.mkdtemp(prefix="hpclab-vcluster-session-"))
    with ExitStack() as stack:
        try:
            stack.enter_context(vcluster.running(state, nodes=count,
                                                 cpus_per_node=ranks_per_node, link=link))
            why = ""
        except VClusterError as exc:     # `up` has removed what it made
            shutil.rmtree(state, ignore_errors=True)
            why = str(exc)
        if why:
            yield Nodes(p, ranks_per_node, False,
                        f"no virtual cluster here ({why}); {p} local processes as {count} "
                        f"nodes × {ranks_per_node} instead: every link is loopback", timeout)
            return
        cluster = stack.enter_context(hpclab.connect(n=p, engines="slurm", nodes=count,
                                                     time="15", timeout=timeout))
        hosts = sorted(set(cluster.hosts))
        yield Nodes(p, ranks_per_node, True,
                    f"{p} Slurm engines on {', '.join(hosts)} (a virtual cluster, "
                    f"{link or 'unlimited'} links)", timeout, cluster)

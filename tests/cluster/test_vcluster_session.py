"""hpclab/cluster/vcluster_session.py where no virtual cluster can come up (here: a user
who is not root, as on a student's laptop): the block says why, runs the ranks as local
processes numbered node by node, and leaves no state directory behind. The virtual path
is run by lectures C2 and C3 in the notebooks tier (root, as in CI)."""

import os
import tempfile
from pathlib import Path

import pytest

from hpclab.cluster import vcluster_session

pytestmark = [pytest.mark.unit_a]


def where_am_i(ctx):
    return ctx.rank, ctx.node, ctx.local_rank


def test_without_root_the_block_runs_local_ranks_numbered_as_nodes(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    before = set(Path(tempfile.gettempdir()).glob("hpclab-vcluster-session-*"))
    with vcluster_session.nodes(2, ranks_per_node=2, link="1gbit", timeout=60) as where:
        assert not where.virtual and where.cluster is None
        assert "needs root" in where.description and "every link is loopback" in where.description
        assert where.run(where_am_i) == [(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1)]
    assert set(Path(tempfile.gettempdir()).glob("hpclab-vcluster-session-*")) == before

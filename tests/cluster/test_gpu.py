"""On a GPU node: engines get cuda:<local_rank> and an NCCL group (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

import hpclab
from hpclab.cluster import ClusterError

pytestmark = [pytest.mark.unit_a, pytest.mark.cluster, pytest.mark.gpu]


def test_engines_use_nccl_and_their_own_gpu():
    n = min(2, torch.cuda.device_count())
    with hpclab.connect(n=n, timeout=120) as cluster:
        assert cluster.backend == "nccl"

        def on_gpu(ctx):
            t = torch.full((4,), float(ctx.rank + 1), device=ctx.device)
            dist.all_reduce(t)
            return str(ctx.device), torch.cuda.current_device(), t.cpu()

        out = cluster.run(on_gpu)
        expected = torch.full((4,), n * (n + 1) / 2)
        for local_rank, (device, current, t) in enumerate(out):   # one host: rank == local
            assert device == f"cuda:{local_rank}" and current == local_rank
            torch.testing.assert_close(t, expected)


def test_more_engines_than_gpus_with_nccl_is_refused():
    with pytest.raises(ClusterError, match="needs one GPU per engine"):
        hpclab.connect(n=torch.cuda.device_count() + 1, backend="nccl", timeout=120)

"""Data- and pipeline-parallel inference equal single-process inference."""

import pytest
import torch
from torch import nn

from hpclab.cluster.spawn import run_local
from hpclab.parallel.inference import data_parallel_predict, predict, shard_bounds
from hpclab.parallel.pipeline import pipeline_forward, split_sequential

pytestmark = [pytest.mark.unit_d]


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Dropout(0.5), nn.Linear(12, 12),
                         nn.ReLU(), nn.Linear(12, 3))


def _inputs(n):
    return torch.randn(n, 5, generator=torch.Generator().manual_seed(1))


def _data_parallel(ctx, n):
    return data_parallel_predict(ctx, _model(), _inputs(n), batch_size=4)


def _pipeline(ctx, n, n_micro):
    stage = split_sequential(_model().eval(), ctx.world_size)[ctx.rank]
    return pipeline_forward(stage, ctx, _inputs(n) if ctx.rank == 0 else None, n_micro)


@pytest.mark.parametrize("world_size, n", [(1, 10), (2, 11), (3, 2), (3, 0)])
def test_data_parallel_predict_equals_one_process(world_size, n):
    ref = predict(_model(), _inputs(n))      # eval mode: dropout off
    for out in run_local(_data_parallel, world_size, n):
        torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("world_size, n_micro", [(2, 1), (3, 4)])
def test_pipeline_forward_equals_one_process(world_size, n_micro):
    outs = run_local(_pipeline, world_size, 9, n_micro)
    torch.testing.assert_close(outs[-1], predict(_model(), _inputs(9)))
    assert all(o is None for o in outs[:-1])


def test_shards_cover_the_inputs_once():
    bounds = [shard_bounds(10, r, 3) for r in range(3)]
    assert bounds == [(0, 4), (4, 7), (7, 10)]
    with pytest.raises(ValueError, match="rank must be in"):
        shard_bounds(10, 3, 3)


def test_inference_bench_prints_every_variant(capsys):
    from hpclab.bench.inference import main
    assert main(["--samples", "256", "--width", "16", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 process" in out and "data-parallel, p=2" in out and "pipeline-parallel, p=2" in out

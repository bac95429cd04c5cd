"""A GPipe step across p processes equals one single-process step on the whole batch."""

import pytest
import torch
from torch import nn

from hpclab.cluster.spawn import run_local
from hpclab.parallel.pipeline import (
    PipelineTimeline,
    bubble_fraction,
    pipeline_step,
    split_sequential,
)

pytestmark = [pytest.mark.unit_d]


def _model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, 3)).double()


def _data(seed, batch=10):
    g = torch.Generator().manual_seed(seed + 1)
    return (torch.randn(batch, 6, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (batch,), generator=g))


def _pipeline(ctx, seed, n_micro):
    model = _model(seed)
    x, y = _data(seed)
    ref_loss = nn.functional.cross_entropy(model(x), y)
    ref_loss.backward()
    ref_grads = [p.grad.clone() for p in model.parameters()]
    stages = split_sequential(_model(seed), ctx.world_size)
    stage, timeline = stages[ctx.rank], PipelineTimeline()
    last = ctx.rank == ctx.world_size - 1
    loss = pipeline_step(stage, ctx, x if ctx.rank == 0 else None, y if last else None,
                         nn.functional.cross_entropy, n_micro, timeline)
    # this stage's parameters are a contiguous run of the full model's
    offset = sum(len(list(s.parameters())) for s in stages[:ctx.rank])
    for k, p in enumerate(stage.parameters()):
        torch.testing.assert_close(p.grad, ref_grads[offset + k], rtol=1e-10, atol=1e-12)
    if last:
        assert loss == pytest.approx(float(ref_loss), rel=1e-12)
    assert [e[1] for e in timeline.events] == ["F"] * n_micro + ["B"] * n_micro
    return loss


@pytest.mark.parametrize("world_size, n_micro", [(1, 1), (2, 1), (2, 4), (3, 3)])
def test_gpipe_step_equals_single_process_step(world_size, n_micro):
    losses = run_local(_pipeline, world_size, 0, n_micro)
    assert losses[-1] is not None and all(loss is None for loss in losses[:-1])


def test_bubble_fraction_and_split():
    assert bubble_fraction(4, 1) == pytest.approx(0.75)
    assert bubble_fraction(4, 12) == pytest.approx(3 / 15)
    stages = split_sequential(_model(0), 2)
    assert [len(s) for s in stages] == [3, 2]
    with pytest.raises(ValueError, match="cannot split 5 layers into 6"):
        split_sequential(_model(0), 6)
    with pytest.raises(ValueError, match="p and m"):
        bubble_fraction(0, 3)

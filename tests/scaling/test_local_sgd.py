"""Local SGD against torch's PeriodicModelAverager, and H = 1 against synchronous SGD."""

import pytest
import torch
import torch.distributed as dist
from torch.distributed.algorithms.model_averaging.averagers import (
    PeriodicModelAverager as TorchAverager,
)

from hpclab.cluster.spawn import run_local
from hpclab.parallel.local_sgd import PeriodicModelAverager

pytestmark = [pytest.mark.unit_d]


def _setup(rank):
    torch.manual_seed(0)   # same initial model on every rank
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    g = torch.Generator().manual_seed(100 + rank)   # different data on every rank
    data = [(torch.randn(16, 4, generator=g, dtype=torch.float64),
             torch.randn(16, 1, generator=g, dtype=torch.float64)) for _ in range(12)]
    return model, data


def _run(ctx, which, period):
    model, data = _setup(ctx.rank)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ours = PeriodicModelAverager(model.parameters(), period)
    # torch averages when (step - warmup) % period == 0 with step counted from 0:
    # warmup = period - 1 averages after steps period, 2·period, ... like ours
    ref = TorchAverager(period=period, warmup_steps=period - 1)
    for x, y in data:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        if which == "sync":   # synchronous data parallelism: average the gradients
            for p in model.parameters():
                dist.all_reduce(p.grad)
                p.grad /= ctx.world_size
        opt.step()
        if which == "ours":
            ours.step()
        elif which == "torch":
            ref.average_parameters(model.parameters())
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("period", [1, 3])
def test_matches_torch_periodic_model_averager(period):
    ours = run_local(_run, 2, "ours", period)
    ref = run_local(_run, 2, "torch", period)
    for a, b in zip(ours[0] + ours[1], ref[0] + ref[1]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_period_one_is_synchronous_sgd_and_longer_periods_drift():
    local = run_local(_run, 3, "ours", 1)
    sync = run_local(_run, 3, "sync", 1)
    for a, b in zip(local[0], sync[0]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    drift = run_local(_run, 3, "ours", 5)   # 12 steps, last average at step 10
    assert not torch.equal(drift[0][0], drift[1][0]), "replicas drift between averages"


def test_bad_period():
    with pytest.raises(ValueError, match="period must be a positive int"):
        PeriodicModelAverager([], period=0)

"""Asynchronous SGD: one worker is plain SGD; many workers see bounded staleness."""

import pytest
import torch
from torch import nn

from hpclab.cluster.spawn import SpawnError, run_local
from hpclab.parallel.async_sgd import parameter_server_train, stale_sgd

pytestmark = [pytest.mark.unit_d]


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).double()


def _batches(rank, n=5):
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(n * 8, 3, generator=g, dtype=torch.float64)
    y = x.sum(dim=1, keepdim=True).sin()
    return list(zip(x.split(8), y.split(8)))


def _ps(ctx, updates, max_staleness):
    return parameter_server_train(ctx, _model(), _batches(ctx.rank), nn.functional.mse_loss,
                                  lr=0.05, updates=updates, max_staleness=max_staleness)


def test_one_worker_is_sequential_sgd():
    server, _ = run_local(_ps, 2, 12, None)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    batches = _batches(1)
    for t in range(12):
        x, y = batches[t % len(batches)]
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    ref = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(server["theta"], ref, rtol=1e-12, atol=1e-14)
    assert server["staleness"] == {0: 12} and server["dropped"] == 0


def test_many_workers_bounded_staleness():
    results = run_local(_ps, 4, 30, 1)
    server, workers = results[0], results[1:]
    assert server["applied"] == 30
    assert max(server["staleness"]) <= 1
    pushes = sum(w["pushes"] for w in workers)
    assert pushes == server["applied"] + server["dropped"] + server["unused"]
    assert server["unused"] == 3


def test_stale_sgd_on_a_quadratic():
    A = torch.diag(torch.tensor([1.0, 10.0], dtype=torch.float64))
    grad = lambda th: A @ th                        # J(θ) = ½ θᵀAθ
    th0 = torch.tensor([1.0, 1.0], dtype=torch.float64)
    gd = stale_sgd(grad, th0, lr=0.05, steps=50, staleness=0)
    ref = th0.clone()
    for _ in range(50):
        ref = ref - 0.05 * grad(ref)
    torch.testing.assert_close(gd[-1], ref)
    # the same step size that converges without staleness diverges with τ = 8
    stale = stale_sgd(grad, th0, lr=0.15, steps=200, staleness=8)
    fresh = stale_sgd(grad, th0, lr=0.15, steps=200, staleness=0)
    assert fresh[-1].norm() < 1e-6
    assert stale[-1].norm() > 1e3


def test_bad_input():
    with pytest.raises(ValueError, match="staleness must be >= 0"):
        stale_sgd(lambda t: t, torch.zeros(1), 0.1, 3, -1)
    with pytest.raises(SpawnError, match="ValueError: a parameter server needs >= 2 ranks"):
        run_local(_ps, 1, 3, None)

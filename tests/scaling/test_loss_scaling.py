"""Our dynamic loss scaler against torch.amp.GradScaler on a run with overflows."""

import pytest
import torch

from hpclab.parallel.loss_scaling import DynamicLossScaler

pytestmark = [pytest.mark.unit_d]

OVERFLOW_STEPS = {3, 4, 11, 30}   # losses blown up to overflow s·J in float32


def _train(scaler, steps=40, growth_interval=5):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    scales, stepped = [], []
    for t in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        if t in OVERFLOW_STEPS:
            loss = loss * 1e38          # s·J overflows to inf on the way back
        scaler.scale(loss).backward()
        before = [p.detach().clone() for p in model.parameters()]
        scaler.step(opt)
        scaler.update()
        stepped.append(any(not torch.equal(b, p) for b, p in zip(before, model.parameters())))
        scales.append(scaler.get_scale())
    return scales, stepped, [p.detach() for p in model.parameters()]


def test_scale_trajectory_matches_torch_gradscaler():
    ours = _train(DynamicLossScaler(init_scale=2.0**10, growth_interval=5))
    ref = _train(torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=5))
    assert ours[0] == ref[0]                      # same s after every step
    assert ours[1] == ref[1]                      # same steps skipped
    assert [not s for s in ours[1]].count(True) == len(OVERFLOW_STEPS)
    for a, b in zip(ours[2], ref[2]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert min(ours[0]) < 2.0**10 < max(ours[0])  # the run both backed off and grew


def test_unscale_before_clipping_then_step_does_not_unscale_twice():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=1.0)
    scaler = DynamicLossScaler(init_scale=8.0)
    scaler.scale(p.sum()).backward()
    assert not scaler.unscale_(opt)
    torch.testing.assert_close(p.grad, torch.ones(3))
    assert scaler.step(opt)
    torch.testing.assert_close(p.detach(), torch.zeros(3))
    with pytest.raises(RuntimeError, match="update"):
        DynamicLossScaler().update()


@pytest.mark.parametrize("kwargs, match", [
    ({"init_scale": -1.0}, "init_scale"), ({"growth_factor": 0.5}, "growth_factor"),
    ({"backoff_factor": 1.5}, "backoff_factor"), ({"growth_interval": 0}, "growth_interval"),
])
def test_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynamicLossScaler(**kwargs)


def test_state_dict_round_trip():
    a = DynamicLossScaler(init_scale=4.0, growth_interval=3)
    a.good_steps, a.scale_value = 2, 32.0
    b = DynamicLossScaler()
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()

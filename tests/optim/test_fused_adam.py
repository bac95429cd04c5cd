"""hpclab.optim.fused_adam (torch.compile) against torch.optim.Adam/AdamW.

Compiling with Inductor takes tens of seconds on CPU, hence `slow`; the GPU variant runs
where CUDA is available (`gpu`).
"""

import pytest
import torch

from hpclab.optim.fused_adam import FusedAdam, FusedAdamW

pytestmark = [pytest.mark.unit_b, pytest.mark.slow]

CASES = [
    (FusedAdam, torch.optim.Adam, {"lr": 0.01}),
    (FusedAdam, torch.optim.Adam, {"lr": 0.01, "weight_decay": 0.01, "maximize": True}),
    (FusedAdamW, torch.optim.AdamW, {"lr": 0.01, "betas": (0.8, 0.99)}),
]


def check(device, dtype, optim_helpers):
    Problem, run, assert_same = optim_helpers
    for ours_cls, torch_cls, kwargs in CASES:
        problem = Problem(seed=1, dtype=dtype)

        def on_device(make):
            def wrapped(ps):
                for p in ps:
                    p.data = p.data.to(device)
                return make(ps)
            return wrapped

        _, _, s_ours = run(problem, on_device(lambda ps, c=ours_cls, k=kwargs: c(ps, **k)),
                           200)
        _, _, s_ref = run(problem, on_device(lambda ps, c=torch_cls, k=kwargs: c(ps, **k)),
                          200)
        assert_same([[t.cpu() for t in s] for s in s_ours],
                    [[t.cpu() for t in s] for s in s_ref], dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_adam_matches_torch_on_cpu(dtype, optim_helpers):
    check("cpu", dtype, optim_helpers)


@pytest.mark.gpu
def test_fused_adam_matches_torch_on_gpu(optim_helpers):
    check("cuda", torch.float32, optim_helpers)


def test_learning_rate_change_does_not_recompile():
    p = torch.nn.Parameter(torch.randn(8))
    opt = FusedAdam([p], lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    torch._dynamo.utils.counters.clear()
    for _ in range(5):
        p.grad = torch.randn(8)
        opt.step()
        sched.step()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] <= 1, "recompiled"

"""Schedules against torch.optim.lr_scheduler, clipping against torch.nn.utils, and the
two double-corrected Adam pitfalls against the right formula."""

import math

import pytest
import torch

import hpclab.optim as ours
from hpclab.optim.adam import adam_step
from hpclab.optim.pitfalls import (
    adam_step_mixed_forms,
    adam_step_overcorrected,
    mixed_forms_factor,
    overcorrection_factor,
)

pytestmark = [pytest.mark.unit_b]


def lrs(make_sched, steps, base_lr=0.1):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    sched = make_sched(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


LR = torch.optim.lr_scheduler
PAIRS = [
    ("step", lambda o: ours.StepDecay(o, step_size=7, gamma=0.5),
     lambda o: LR.StepLR(o, step_size=7, gamma=0.5), 50),
    ("cosine", lambda o: ours.Cosine(o, T_max=40, eta_min=1e-3),
     lambda o: LR.CosineAnnealingLR(o, T_max=40, eta_min=1e-3), 41),
    ("warmup", lambda o: ours.LinearWarmup(o, warmup_steps=10, start_factor=0.1),
     lambda o: LR.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=10), 30),
]


@pytest.mark.parametrize("name,mine,theirs,steps", PAIRS, ids=[p[0] for p in PAIRS])
def test_schedule_matches_torch(name, mine, theirs, steps):
    assert lrs(mine, steps) == pytest.approx(lrs(theirs, steps), rel=1e-9, abs=1e-15)


def test_warmup_cosine_shape():
    W, T, base = 10, 50, 0.1
    got = lrs(lambda o: ours.WarmupCosine(o, warmup_steps=W, total_steps=T), T + 5, base)
    assert got[0] == 0.0
    assert got[W // 2] == pytest.approx(base / 2)
    assert got[W] == pytest.approx(base)                       # peak right after warm-up
    assert got[W + (T - W) // 2] == pytest.approx(base / 2)    # half-way down the cosine
    assert got[T:] == pytest.approx([0.0] * 5, abs=1e-15)      # then held at eta_min
    cosine = lrs(lambda o: LR.CosineAnnealingLR(o, T_max=T - W), T - W + 1, base)
    assert got[W:T + 1] == pytest.approx(cosine, rel=1e-9, abs=1e-15)


def test_schedule_state_dict_round_trip():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = ours.WarmupCosine(opt, warmup_steps=5, total_steps=20)
    for _ in range(8):
        opt.step()
        sched.step()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched2 = ours.WarmupCosine(opt2, warmup_steps=5, total_steps=20)
    sched2.load_state_dict(sched.state_dict())
    opt2.param_groups[0]["lr"] = sched2.get_last_lr()[0]
    for _ in range(5):
        for o, s in ((opt, sched), (opt2, sched2)):
            o.step()
            s.step()
        assert sched.get_last_lr() == sched2.get_last_lr()


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_schedule_rejects_bad_lengths(bad):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match=f"warmup_steps must be a positive integer, got {bad}"):
        ours.LinearWarmup(opt, warmup_steps=bad)


def _grads(seed, scale):
    gen = torch.Generator().manual_seed(seed)
    ps = [torch.nn.Parameter(torch.zeros(s)) for s in [(5, 3), (3,), (2, 2, 2)]]
    for p in ps:
        p.grad = scale * torch.randn(p.shape, generator=gen)
    ps.append(torch.nn.Parameter(torch.zeros(2)))  # no grad: ignored
    return ps


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.5, math.inf])
@pytest.mark.parametrize("max_norm", [0.1, 1.0, 1e6])
@pytest.mark.parametrize("foreach", [None, False])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, foreach):
    a, b = _grads(1, 3.0), _grads(1, 3.0)
    total_ours = ours.clip_grad_norm_(a, max_norm, norm_type, foreach=foreach)
    total_torch = torch.nn.utils.clip_grad_norm_(b, max_norm, norm_type, foreach=foreach)
    torch.testing.assert_close(total_ours, total_torch, rtol=1e-6, atol=0)
    for p, q in zip(a[:-1], b[:-1]):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=0)


def test_clip_grad_norm_nonfinite():
    ps = _grads(2, 1.0)
    ps[0].grad[0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="non-finite"):
        ours.clip_grad_norm_(ps, 1.0, error_if_nonfinite=True)


@pytest.mark.parametrize("clip_value", [0.01, 0.5, 100.0])
@pytest.mark.parametrize("foreach", [None, False])
def test_clip_grad_value_matches_torch(clip_value, foreach):
    a, b = _grads(3, 2.0), _grads(3, 2.0)
    ours.clip_grad_value_(a, clip_value, foreach=foreach)
    torch.nn.utils.clip_grad_value_(b, clip_value, foreach=foreach)
    for p, q in zip(a[:-1], b[:-1]):
        assert torch.equal(p.grad, q.grad)


@pytest.mark.parametrize(("fn", "factor", "expected"), [
    (adam_step_overcorrected, overcorrection_factor,
     lambda t: 1 / ((1 - 0.9 ** t) * math.sqrt(1 - 0.999 ** t))),
    (adam_step_mixed_forms, mixed_forms_factor,
     lambda t: math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)),
], ids=["seed-002", "mixed-forms"])
@pytest.mark.parametrize("t", [1, 2, 10, 100, 1000])
def test_wrong_adams_are_off_by_their_factor(fn, factor, expected, t):
    """With the same (m, v, t), a wrong step is the right one times its factor (ε → 0)."""
    gen = torch.Generator().manual_seed(t)
    m0, v0 = torch.randn(50, generator=gen), torch.rand(50, generator=gen)
    g = torch.randn(50, generator=gen, dtype=torch.float64)
    steps = []
    for step in (adam_step, fn):
        θ = torch.zeros(50, dtype=torch.float64)
        step(θ, g, m0.double(), v0.double(), t, lr=1e-3, beta1=0.9, beta2=0.999, eps=0.0)
        steps.append(θ)
    right, wrong = steps
    torch.testing.assert_close(wrong, factor(t) * right, rtol=1e-12, atol=0)
    assert factor(t) == pytest.approx(expected(t))


def test_seed_002_factors_are_the_ones_the_course_quotes():
    """316 at t = 1, 15 at t = 10, 3.2 at t = 100 (B2, unit B notes, exercise B2b)."""
    assert [round(overcorrection_factor(t), 1) for t in (1, 10, 100)] == [316.2, 15.4, 3.2]
    assert round(mixed_forms_factor(1), 2) == 0.32

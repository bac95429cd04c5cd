"""LAMB against two independent implementations.

1. torch_optimizer.Lamb (pip package torch-optimizer 0.3.0), whose default follows paper
   v3 (no bias correction, φ(z) = min(z, 10)): our `bias_correction=False`.
2. A NumPy transcription of Algorithm 2 of You et al. (2019, final version), written
   here from the paper and not from lamb.py: our default `bias_correction=True`.
"""

import numpy as np
import pytest
import torch

import hpclab.optim as ours

pytestmark = [pytest.mark.unit_b]


def lamb_reference(x0s, grads_at, steps, lr, beta1, beta2, eps, wd, clamp=10.0):
    """Algorithm 2, one 'layer' per array; grads_at(k, xs) gives g_t."""
    xs = [x.copy() for x in x0s]
    ms = [np.zeros_like(x) for x in xs]
    vs = [np.zeros_like(x) for x in xs]
    for t in range(1, steps + 1):
        gs = grads_at(t - 1, xs)
        for i, (x, g) in enumerate(zip(xs, gs)):
            if g is None:
                continue
            ms[i] = beta1 * ms[i] + (1 - beta1) * g
            vs[i] = beta2 * vs[i] + (1 - beta2) * g * g
            m_hat = ms[i] / (1 - beta1 ** t)
            v_hat = vs[i] / (1 - beta2 ** t)
            r = m_hat / (np.sqrt(v_hat) + eps)
            u = r + wd * x
            x_norm, u_norm = np.linalg.norm(x), np.linalg.norm(u)
            trust = min(x_norm, clamp) / u_norm if x_norm > 0 and u_norm > 0 else 1.0
            xs[i] = x - lr * trust * u
    return xs


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_lamb_matches_algorithm_2_in_numpy(foreach, wd, optim_helpers):
    Problem, _, _ = optim_helpers
    problem = Problem(seed=2, dtype=torch.float64, none_every=0)
    params = problem.params()[:-1]
    params.append(torch.nn.Parameter(torch.zeros(4, dtype=torch.float64)))  # ‖θ‖ = 0 layer
    opt = ours.LAMB(params, lr=0.02, betas=(0.9, 0.99), eps=1e-6, weight_decay=wd,
                    foreach=foreach)
    all_ones = [torch.ones(4, dtype=torch.float64)]

    def grads_torch(k, ps):
        problem.set_grads(ps[:-1] + [torch.nn.Parameter(torch.ones(3))], k)
        ps[-1].grad = all_ones[0] * np.sin(k)

    def grads_numpy(k, xs):
        ps = [torch.nn.Parameter(torch.from_numpy(x)) for x in xs]
        grads_torch(k, ps)
        return [p.grad.numpy() for p in ps]

    for k in range(200):
        grads_torch(k, params)
        opt.step()
    ref = lamb_reference([p.detach().numpy() for p in problem.params()[:-1]] + [np.zeros(4)],
                         grads_numpy, 200, 0.02, 0.9, 0.99, 1e-6, wd)
    for p, r in zip(params, ref):
        np.testing.assert_allclose(p.detach().numpy(), r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_lamb_matches_torch_optimizer(dtype, foreach, wd, optim_helpers):
    try:
        import torch_optimizer
    except ImportError:
        pytest.fail("torch-optimizer is a test dependency of hpclab (the independent LAMB): "
                    "pip install torch-optimizer")
    Problem, run, assert_same = optim_helpers
    problem = Problem(seed=4, dtype=dtype)
    kw = {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": wd}
    _, _, s_ours = run(problem, lambda ps: ours.LAMB(ps, bias_correction=False,
                                                     foreach=foreach, **kw), 200)
    _, _, s_ref = run(problem, lambda ps: torch_optimizer.Lamb(ps, clamp_value=10, **kw), 200)
    assert_same(s_ours, s_ref, dtype)


def test_trust_ratio_scales_each_layer_to_its_size():
    """The first LAMB step moves every layer by η‖θ‖ (weight decay 0, ‖θ‖ < 10)."""
    big = torch.nn.Parameter(torch.full((4,), 2.0))         # ‖θ‖ = 4
    tiny = torch.nn.Parameter(torch.full((4,), 1e-3))
    huge = torch.nn.Parameter(torch.full((4,), 50.0))       # ‖θ‖ = 100, clamped to 10
    opt = ours.LAMB([big, tiny, huge], lr=0.1)
    before = [p.detach().clone() for p in (big, tiny, huge)]
    for p in (big, tiny, huge):
        p.grad = torch.randn(4)
    opt.step()
    for p, b in zip([big, tiny, huge], before):
        expected = 0.1 * b.norm().clamp(max=10.0)
        torch.testing.assert_close((p - b).norm(), expected, rtol=1e-5, atol=0)

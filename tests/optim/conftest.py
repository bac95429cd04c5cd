"""Shared helpers for the optimizer tests: a random problem and a trajectory runner.

The problem: a few parameter tensors of random shapes; the gradient at step k is
g = tanh(a ⊙ (θ − c)) + 0.1 ξₖ with fixed random a, c and seeded noise ξₖ. It is bounded,
so even `maximize=True` runs stay finite for hundreds of steps, and it is computed from
each optimizer's own θ, so two optimizers only agree if their whole trajectories do.
"""

import pytest
import torch


class Problem:
    def __init__(self, seed=0, dtype=torch.float32, shapes=((7, 5), (5,), (3, 2, 2)),
                 zero_every=7, none_every=5):
        gen = torch.Generator().manual_seed(seed)
        self.dtype, self.seed = dtype, seed
        self.init = [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype)
                     for s in shapes]
        self.a = [torch.rand(s, generator=gen, dtype=torch.float64).to(dtype) * 2 + 0.1
                  for s in shapes]
        self.c = [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]
        self.zero_every, self.none_every = zero_every, none_every

    def params(self):
        ps = [torch.nn.Parameter(t.clone()) for t in self.init]
        # One parameter that never receives a gradient (a frozen layer): must stay put.
        ps.append(torch.nn.Parameter(torch.ones(3, dtype=self.dtype)))
        return ps

    def set_grads(self, params, k):
        gen = torch.Generator().manual_seed(self.seed * 100003 + k)
        *trained, frozen = params
        frozen.grad = None
        for i, (p, a, c) in enumerate(zip(trained, self.a, self.c)):
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(self.dtype)
            if self.none_every and i == 1 and k % self.none_every == 3:
                p.grad = None      # skipped this step: state must not advance
            elif self.zero_every and i == 0 and k % self.zero_every == 0:
                p.grad = torch.zeros_like(p)
            else:
                p.grad = torch.tanh(a * (p.detach() - c)) + 0.1 * noise


def run(problem, make_opt, steps, start=0, params=None, opt=None):
    """Run `steps` optimizer steps; return (params, optimizer, snapshots every 10 steps)."""
    params = problem.params() if params is None else params
    opt = make_opt(params) if opt is None else opt
    snaps = []
    for k in range(start, start + steps):
        problem.set_grads(params, k)
        opt.step()
        if k % 10 == 9:
            snaps.append([p.detach().clone() for p in params])
    return params, opt, snaps


def tolerances(dtype):
    # rtol as the issue asks; atol for coordinates passing near zero.
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-10,
                                                                          "atol": 1e-12}


def assert_same_trajectory(snaps_a, snaps_b, dtype):
    assert len(snaps_a) == len(snaps_b)
    for k, (a, b) in enumerate(zip(snaps_a, snaps_b)):
        for i, (x, y) in enumerate(zip(a, b)):
            torch.testing.assert_close(x, y, **tolerances(dtype),
                                       msg=lambda m, k=k, i=i: f"snapshot {k}, tensor {i}: {m}")


@pytest.fixture
def optim_helpers():
    return Problem, run, assert_same_trajectory

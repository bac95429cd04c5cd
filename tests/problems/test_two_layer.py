"""The hand-written two-layer network: backward equals autograd (float64, 1e-10)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hpclab.problems.two_layer import backward, forward, init_two_layer, predict, train_two_layer

pytestmark = [pytest.mark.unit_b]


@given(n=st.integers(1, 30), d=st.integers(1, 10), h=st.integers(1, 16),
       k=st.integers(2, 6), l2=st.sampled_from([0.0, 0.01]),
       activation=st.sampled_from(["relu", "tanh"]), seed=st.integers(0, 100))
@settings(max_examples=40, deadline=None)
def test_backward_equals_autograd(n, d, h, k, l2, activation, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(k, (n,), generator=g)
    params = init_two_layer(d, h, k, seed=seed)
    loss, cache = forward(params, X, y, l2=l2, activation=activation)
    ours = backward(params, cache)
    leaves = {name: p.clone().requires_grad_(True) for name, p in params.items()}
    ref_loss, _ = forward(leaves, X, y, l2=l2, activation=activation)
    auto = torch.autograd.grad(ref_loss, list(leaves.values()))
    for name, a in zip(leaves, auto):
        torch.testing.assert_close(ours[name], a, rtol=1e-10, atol=1e-10, msg=name)
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-14)


def test_loss_equals_torch_reference_network():
    # The same weights in nn.Linear layers give the same loss: forward is the usual MLP.
    X = torch.randn(20, 5, dtype=torch.float64)
    y = torch.randint(3, (20,))
    p = init_two_layer(5, 7, 3, seed=1)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(),
                              torch.nn.Linear(7, 3)).double()
    with torch.no_grad():
        net[0].weight.copy_(p["W1"].T), net[0].bias.copy_(p["b1"])
        net[2].weight.copy_(p["W2"].T), net[2].bias.copy_(p["b2"])
    loss, _ = forward(p, X, y)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(net(X), y))


def test_training_by_hand_fits_a_small_problem():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 2, generator=g, dtype=torch.float64)
    y = (X[:, 0] * X[:, 1] > 0).long()     # XOR-like: not linearly separable
    params = init_two_layer(2, 32, 2, seed=0)
    losses = train_two_layer(params, X, y, lr=0.5, steps=400)
    assert losses[-1] < 0.5 * losses[0]
    assert (predict(params, X) == y).double().mean() > 0.9


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n_hidden must be >= 1, got 0"):
        init_two_layer(3, 0, 2)
    with pytest.raises(ValueError, match="activation must be one of"):
        forward(init_two_layer(2, 2, 2), torch.zeros(1, 2, dtype=torch.float64),
                torch.tensor([0]), activation="sigmoid")

"""Losses written out equal torch.nn.functional's, including extreme logits."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hpclab.problems.losses import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    log_softmax,
    mse,
    softmax,
)

pytestmark = [pytest.mark.unit_b]
TOL = {"rtol": 1e-12, "atol": 1e-12}


def rand(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64) * scale


@given(n=st.integers(1, 40), k=st.integers(1, 6), seed=st.integers(0, 1000))
@settings(max_examples=30, deadline=None)
def test_mse_and_bce_equal_torch(n, k, seed):
    a, b = rand(n, k, seed=seed), rand(n, k, seed=seed + 1)
    torch.testing.assert_close(mse(a, b), F.mse_loss(a, b), **TOL)
    p, y = torch.sigmoid(a), (b > 0).double()
    torch.testing.assert_close(binary_cross_entropy(p, y), F.binary_cross_entropy(p, y), **TOL)
    torch.testing.assert_close(binary_cross_entropy_with_logits(a, y),
                               F.binary_cross_entropy_with_logits(a, y), **TOL)


@given(n=st.integers(1, 40), c=st.integers(2, 12), seed=st.integers(0, 1000),
       scale=st.sampled_from([0.1, 1.0, 30.0]))
@settings(max_examples=30, deadline=None)
def test_cross_entropy_equals_torch(n, c, seed, scale):
    z = rand(n, c, seed=seed, scale=scale)
    t = torch.randint(c, (n,), generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(cross_entropy(z, t), F.cross_entropy(z, t), **TOL)
    torch.testing.assert_close(log_softmax(z), F.log_softmax(z, dim=-1), **TOL)
    torch.testing.assert_close(softmax(z), F.softmax(z, dim=-1), **TOL)


def test_cross_entropy_flattens_sequence_logits():
    z, t = rand(3, 5, 7), torch.randint(7, (3, 5))
    torch.testing.assert_close(cross_entropy(z, t), F.cross_entropy(z.reshape(-1, 7),
                                                                    t.reshape(-1)), **TOL)


def test_stable_forms_survive_huge_logits():
    z = torch.tensor([1000.0, -1000.0, 0.0], dtype=torch.float64)
    y = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(binary_cross_entropy_with_logits(z, y),
                               F.binary_cross_entropy_with_logits(z, y), **TOL)
    logits = torch.tensor([[1000.0, 0.0, -1000.0]], dtype=torch.float64)
    assert torch.isfinite(cross_entropy(logits, torch.tensor([2])))
    # p exactly 0 or 1: torch clamps log at −100, so do we
    p = torch.tensor([0.0, 1.0], dtype=torch.float64)
    yy = torch.tensor([1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(binary_cross_entropy(p, yy), F.binary_cross_entropy(p, yy))


def test_gradients_equal_torch():
    z = rand(6, 4).requires_grad_(True)
    t = torch.tensor([0, 1, 2, 3, 0, 1])
    (g_ours,) = torch.autograd.grad(cross_entropy(z, t), z)
    (g_ref,) = torch.autograd.grad(F.cross_entropy(z, t), z)
    torch.testing.assert_close(g_ours, g_ref, **TOL)


def test_mismatched_lengths_are_named():
    with pytest.raises(ValueError, match="logits give 4 rows but target has 3"):
        cross_entropy(rand(4, 3), torch.tensor([0, 1, 2]))

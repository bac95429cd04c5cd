"""Shared by the tensor- and sequence-parallel tests (fixture `tp`): single-process
references (float64) and the comparison of a parallel module with them, run on every
rank. (A fixture, because the tests are imported with --import-mode=importlib.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from hpclab.parallel.sequence_parallel import all_reduce_sequence_parallel_grads
from hpclab.parallel.tensor_parallel import gather_parameters
from hpclab.problems.transformer import TransformerConfig

TOL = {"rtol": 1e-10, "atol": 1e-12}   # float64: only the summation order differs
B, T = 2, 8


def config(**kw) -> TransformerConfig:
    return TransformerConfig(**{"vocab_size": 11, "block_size": T, "d_model": 16,
                                "n_heads": 4, **kw})


def reference(module_fn, seed: int, d_model: int = 16):
    """The single-process module, an input and its forward/backward under J = Σ sin(y)."""
    torch.manual_seed(seed)
    module = module_fn().double()
    x = torch.randn(B, T, d_model, dtype=torch.float64, requires_grad=True)
    y = module(x)
    y.sin().sum().backward()
    return module, x, y.detach()


def check_against(parallel, ctx, module, x_ref, y_ref, sequence_parallel: bool) -> None:
    """The parallel module's forward, input gradient and every parameter's gradient
    (gathered from the ranks) against the single-process module's."""
    t, r = ctx.world_size, ctx.rank
    x = x_ref.detach().clone()
    if sequence_parallel:   # this rank's positions only; J is the sum of the ranks' parts
        x = x.chunk(t, dim=1)[r].contiguous()
        y_ref, x_grad = y_ref.chunk(t, dim=1)[r], x_ref.grad.chunk(t, dim=1)[r]
    else:
        x_grad = x_ref.grad
    x.requires_grad_(True)
    y = parallel(x)
    y.sin().sum().backward()
    all_reduce_sequence_parallel_grads(parallel, ctx)
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(x.grad, x_grad, **TOL)
    grads = gather_parameters(parallel, ctx, grads=True)
    weights = gather_parameters(parallel, ctx)
    expected = dict(module.named_parameters())
    assert grads.keys() == expected.keys(), (grads.keys(), expected.keys())
    for name, p in expected.items():
        torch.testing.assert_close(weights[name], p.detach(), **TOL, msg=name)
        torch.testing.assert_close(grads[name], p.grad, **TOL, msg=name)


@pytest.fixture
def tp():
    return SimpleNamespace(TOL=TOL, B=B, T=T, config=config, reference=reference,
                           check_against=check_against)

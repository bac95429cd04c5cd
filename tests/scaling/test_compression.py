"""Compression hooks: exact where they should be, error feedback loses nothing, PowerSGD
tends to the SVD's best rank-r approximation."""

import pytest
import torch
import torch.distributed as dist

from hpclab.cluster.spawn import run_local
from hpclab.parallel.buckets import GradBucket
from hpclab.parallel.compression import (
    CompressionState,
    PowerSGDState,
    TopKState,
    fp16_hook,
    int8_hook,
    matrix_shape,
    powersgd_hook,
    topk_hook,
)

pytestmark = [pytest.mark.unit_d]

HOOKS = {
    "fp16": (fp16_hook, lambda: CompressionState()),
    "int8": (int8_hook, lambda: CompressionState()),
    "topk": (topk_hook, lambda: TopKState(ratio=0.05)),
    "powersgd": (powersgd_hook, lambda: PowerSGDState(rank=1)),
}


def bucket_of(g: torch.Tensor, index: int = 0, n_buckets: int = 1) -> GradBucket:
    """DDP's view of the flat gradient g as bucket `index` of `n_buckets`."""
    param = torch.zeros_like(g, requires_grad=True)
    param.grad = g
    bucket = GradBucket(index, [param], n_buckets)
    bucket.flatten_grads()
    return bucket


def _grad(rank, step, n=103):
    return torch.randn(n, generator=torch.Generator().manual_seed(1000 * step + rank),
                       dtype=torch.float64)


def _error_feedback_telescopes(ctx, name, steps=6):
    """Σ_t ĝ_t = Σ_t g_t + e_0 − e_T on every rank: what is dropped is only delayed."""
    hook, make_state = HOOKS[name]
    state = make_state()
    sent, grads = torch.zeros(103, dtype=torch.float64), torch.zeros(103, dtype=torch.float64)
    for t in range(steps):
        g = _grad(ctx.rank, t)
        grads += g
        sent += hook(state, bucket_of(g))
    torch.testing.assert_close(sent + state.residuals[0], grads, rtol=1e-9, atol=1e-9)
    return state.bytes_sent


@pytest.mark.parametrize("name", sorted(HOOKS))
@pytest.mark.parametrize("world_size", [1, 3])
def test_error_feedback_keeps_every_gradient(name, world_size):
    sent = run_local(_error_feedback_telescopes, world_size, name)
    uncompressed = 6 * 2 * (world_size - 1) / world_size * 103 * 8
    if world_size > 1:
        assert 0 < sent[0] < uncompressed, "compression must send fewer bytes than float64"


def _state_follows_the_bucket_index(ctx, name):
    """Two buckets of different sizes, seen in a different order every step: each keeps
    its own residual, so error feedback telescopes per bucket."""
    hook, make_state = HOOKS[name]
    state = make_state()
    sizes = (103, 40)
    sent = [torch.zeros(n, dtype=torch.float64) for n in sizes]
    grads = [torch.zeros(n, dtype=torch.float64) for n in sizes]
    for t in range(6):
        for i in ((1, 0) if t % 2 else (0, 1)):
            g = _grad(ctx.rank, 10 * t + i, sizes[i])
            grads[i] += g
            sent[i] += hook(state, bucket_of(g, i, n_buckets=2))
    for i in range(2):
        torch.testing.assert_close(sent[i] + state.residuals[i], grads[i], rtol=1e-9,
                                   atol=1e-9)
    return True


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_state_is_kept_per_bucket_index(name):
    assert all(run_local(_state_follows_the_bucket_index, 2, name))


def _exact_cases(ctx):
    g = _grad(ctx.rank, 0)
    ref = g.clone()
    dist.all_reduce(ref)
    ref /= ctx.world_size
    out = topk_hook(TopKState(ratio=1.0), bucket_of(g))              # k = n: nothing dropped
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    halves = g.half().double()
    dist.all_reduce(halves)
    torch.testing.assert_close(fp16_hook(CompressionState(), bucket_of(g)), halves / ctx.world_size,
                               rtol=2e-3, atol=2e-3)           # fp16 sum carries fp16 rounding
    q = int8_hook(CompressionState(error_feedback=False), bucket_of(g))
    step = (g.abs().max() / 127).item()
    assert (q - ref).abs().max().item() <= step                # half a step per rank, at most
    return True


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_hooks_against_dist_all_reduce(world_size):
    assert all(run_local(_exact_cases, world_size))


def _powersgd_tends_to_svd(ctx, r):
    torch.manual_seed(0)   # the same matrix on every rank: the average is the matrix itself
    U, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(10, 10, dtype=torch.float64))
    s = torch.tensor([10.0, 6.0, 3.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01], dtype=torch.float64)
    M = U[:, :10] @ torch.diag(s) @ V.t()
    assert matrix_shape(M.numel()) == (10, 12)
    M = M.t().contiguous()      # (10 × 12) so the hook's view of the flat bucket is M itself
    state = PowerSGDState(rank=r, error_feedback=False)
    for _ in range(60):
        approx = powersgd_hook(state, bucket_of(M.reshape(-1))).view(10, 12)
    u, sv, vh = torch.linalg.svd(M)
    best = u[:, :r] @ torch.diag(sv[:r]) @ vh[:r]
    torch.testing.assert_close(approx, best, rtol=1e-8, atol=1e-8)
    return True


@pytest.mark.parametrize("world_size, r", [(1, 1), (1, 3), (2, 2)])
def test_powersgd_converges_to_best_rank_r_approximation(world_size, r):
    assert all(run_local(_powersgd_tends_to_svd, world_size, r))


def test_bad_states_name_the_value():
    with pytest.raises(ValueError, match="ratio"):
        TopKState(ratio=0.0)
    with pytest.raises(ValueError, match="rank"):
        PowerSGDState(rank=0)

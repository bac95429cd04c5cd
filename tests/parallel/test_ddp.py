"""Our DistributedDataParallel against single-process training (the trusted reference).

N ranks with global batch B must end with the same parameters as one process with batch
B after K steps, for every all-reduce algorithm, with one bucket or one bucket per
parameter, and with gradient accumulation (no_sync); and so must the naive wrapper (one
all-reduce per parameter, naive_dp.py). Tolerance: float32 sums in a
different order, so |θ_ddp − θ_ref| <= 1e-5 + 1e-4·|θ_ref| after K = 4 momentum-SGD steps.
"""

import pytest
import torch
import torch.distributed as dist

from hpclab.cluster.spawn import run_local
from hpclab.comm import ALGORITHMS
from hpclab.parallel import DistributedDataParallel, NaiveDataParallel

pytestmark = [pytest.mark.unit_d, pytest.mark.cluster]

# The first torch.optim optimizer imports torch._dynamo (seconds); do it once here, before
# run_local forks, instead of once in every forked rank.
torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)

B, K, TINY = 12, 4, 1e-6          # TINY MiB: one bucket per parameter
ATOL, RTOL = 1e-5, 1e-4


def make_model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))


def data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(B * K, 5, generator=g), torch.randint(0, 3, (B * K,), generator=g)


def train(model, X, Y, ranks_batch, accumulation=1, ddp=None):
    """K steps; `ranks_batch(step)` gives this process's indices of the global batch."""
    net = ddp or model
    opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
    for step in range(K):
        idx = ranks_batch(step)
        micro = len(idx) // accumulation
        opt.zero_grad()
        for k in range(accumulation):
            sub = idx[k * micro:(k + 1) * micro]
            loss = torch.nn.functional.cross_entropy(net(X[sub]), Y[sub]) / accumulation
            if hasattr(ddp, "no_sync") and k < accumulation - 1:
                with ddp.no_sync():
                    loss.backward()
            else:
                loss.backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def equivalence_on_rank(ctx):
    X, Y = data()
    p = ctx.world_size
    reference = train(make_model(0), X, Y, lambda s: list(range(s * B, (s + 1) * B)))
    worst = {}
    for algorithm in ALGORITHMS["all_reduce"] + ("auto",):
        for cap, accumulation in ((25, 1), (TINY, 1), (25, 2), (TINY, 2)):
            # each rank starts from different weights: DDP's broadcast must fix that
            model = make_model(0 if ctx.rank == 0 else 100 + ctx.rank)
            ddp = DistributedDataParallel(model, bucket_cap_mb=cap, algorithm=algorithm)
            ours = train(model, X, Y, lambda s: list(range(s * B, (s + 1) * B))[ctx.rank::p],
                         accumulation, ddp)
            ddp.close()
            worst[(algorithm, cap, accumulation)] = error(ours, reference)
    for accumulation in (1, 2):   # the naive wrapper: one all-reduce per parameter
        model = make_model(0 if ctx.rank == 0 else 100 + ctx.rank)
        ours = train(model, X, Y, lambda s: list(range(s * B, (s + 1) * B))[ctx.rank::p],
                     accumulation, NaiveDataParallel(model))
        worst[("naive per parameter", None, accumulation)] = error(ours, reference)
    return worst


def error(ours, reference) -> float:
    """max over parameters of |θ_ours − θ_ref| − RTOL·|θ_ref| (<= ATOL passes)."""
    return max(((a - b).abs() - RTOL * b.abs()).max().item() for a, b in zip(ours, reference))


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ddp_equals_single_process(world_size):
    for rank, worst in enumerate(run_local(equivalence_on_rank, world_size, timeout=120)):
        bad = {k: v for k, v in worst.items() if v > ATOL}
        assert not bad, f"rank {rank}: (algorithm, bucket MiB, accumulation) -> error {bad}"
        assert len(worst) == (len(ALGORITHMS["all_reduce"]) + 1) * 4 + 2


def hooks_and_no_sync(ctx):
    X, Y = data()
    model = make_model(ctx.rank)
    ddp = DistributedDataParallel(model, bucket_cap_mb=TINY, algorithm="ring")
    x, y = X[ctx.rank::ctx.world_size][:4], Y[ctx.rank::ctx.world_size][:4]
    # no_sync: gradients stay local, equal to plain autograd on this rank's batch
    local = make_model(0)
    local.load_state_dict(model.state_dict())
    torch.nn.functional.cross_entropy(local(x), y).backward()
    with ddp.no_sync():
        torch.nn.functional.cross_entropy(ddp(x), y).backward()
    no_sync_ok = all(torch.allclose(a.grad, b.grad) for a, b in zip(model.parameters(),
                                                                     local.parameters()))
    # a comm hook: sum instead of average, recording the buckets it sees
    calls = []

    def sum_hook(state, bucket):
        flat = bucket.buffer()
        assert flat.numel() == sum(p.numel() for p in bucket.parameters())
        state.append((bucket.index(), flat.numel(), bucket.is_last()))
        dist.all_reduce(flat)
        return flat

    ddp.register_comm_hook(calls, sum_hook)
    model.zero_grad()
    torch.nn.functional.cross_entropy(ddp(x), y).backward()
    summed = [p.grad.clone() for p in model.parameters()]
    expected = []
    for p in local.parameters():
        g = p.grad.clone()
        dist.all_reduce(g)
        expected.append(g)
    hook_ok = all(torch.allclose(a, b, atol=1e-6) for a, b in zip(summed, expected))
    ddp.close()
    return no_sync_ok, hook_ok, calls, [p.numel() for p in model.parameters()][::-1], \
        ddp.last_exposed_comm >= 0


def test_no_sync_and_comm_hook():
    for no_sync_ok, hook_ok, calls, sizes, timed in run_local(hooks_and_no_sync, 2):
        assert no_sync_ok, "inside no_sync gradients must equal the local autograd gradients"
        assert hook_ok, "a sum hook must give the sum of the ranks' gradients"
        # one bucket per parameter, last layer first, in index order, the last one marked
        assert calls == [(i, n, i == len(sizes) - 1) for i, n in enumerate(sizes)], calls
        assert timed


def in_subgroup(ctx):
    group = dist.new_group([0, 2])
    if ctx.rank == 1:
        return None
    X, Y = data()
    r = dist.get_rank(group)
    out = {}
    for algorithm in ("torch", "ring"):
        model = make_model(10 + ctx.rank)
        ddp = DistributedDataParallel(model, algorithm=algorithm, group=group)
        ours = train(model, X, Y, lambda s: list(range(s * B, (s + 1) * B))[r::2], 1, ddp)
        ddp.close()
        ref = train(make_model(10), X, Y, lambda s: list(range(s * B, (s + 1) * B)))
        out[algorithm] = max((a - b).abs().max().item() for a, b in zip(ours, ref))
    return out


def test_works_in_a_subgroup():
    """Ranks 0 and 2 of 3 train together; the broadcast comes from the group's rank 0."""
    results = run_local(in_subgroup, 3)
    assert results[1] is None
    for res in (results[0], results[2]):
        assert max(res.values()) < 1e-4, res


def bad_arguments(ctx):
    errors = []
    for kwargs in ({"bucket_cap_mb": 0}, {"algorithm": "carrier_pigeon"}, {"timeout": -1}):
        try:
            DistributedDataParallel(make_model(0), **kwargs)
        except ValueError as exc:
            errors.append(str(exc))
    return errors


def test_bad_arguments_are_named():
    errors = run_local(bad_arguments, 1)[0]
    assert len(errors) == 3
    assert "bucket_cap_mb" in errors[0] and "carrier_pigeon" in errors[1] and "-1" in errors[2]


def test_needs_a_process_group():
    with pytest.raises(RuntimeError, match="process group"):
        DistributedDataParallel(make_model(0))

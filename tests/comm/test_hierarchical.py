"""The hierarchical all-reduce (hpclab/comm/hierarchical.py) against torch.distributed's,
on 4 real processes numbered as 2 "nodes" × 2 ranks (run_local(..., ranks_per_node=2)) and
6 as 2 × 3; sizes that no block count divides. Its traffic is the textbook's: 2(N−1)/N·n
bytes per node cross the node boundary, against the flat ring's 2(p−1)/p·n. The two-level
cost model: its closed form, what "auto" picks, calibration on a cluster of nodes, DDP.
"""

import pytest
import torch
import torch.distributed as dist
from torch import nn

from hpclab import comm
from hpclab.cluster.spawn import run_local
from hpclab.comm import cost_model
from hpclab.comm.cost_model import Params, TwoLevel
from hpclab.parallel.ddp import DistributedDataParallel

pytestmark = [pytest.mark.unit_c]

SIZES = (1, 3, 7, 1001)
OPS = {"sum": dist.ReduceOp.SUM, "avg": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}


def _against_torch(ctx):
    assert (ctx.node, ctx.local_rank) == divmod(ctx.rank, ctx.ranks_per_node)
    worst = 0.0
    for n in SIZES:
        for op, torch_op in OPS.items():
            g = torch.Generator().manual_seed(100 * n + ctx.rank)
            x = torch.randn(n, generator=g, dtype=torch.float64)
            expected = x.clone()
            dist.all_reduce(expected, op=torch_op)
            if op == "avg":
                expected /= ctx.world_size
            comm.all_reduce(x, op=op, algorithm="hierarchical")
            worst = max(worst, (x - expected).abs().max().item())
        ints = torch.arange(n, dtype=torch.int64) * (ctx.rank + 1)
        comm.all_reduce(ints, algorithm="hierarchical", ranks_per_node=ctx.ranks_per_node)
        assert torch.equal(ints, torch.arange(n) * sum(range(1, ctx.world_size + 1)))
    return worst


@pytest.mark.parametrize("p, k", [(4, 2), (6, 3)])
def test_matches_torch_distributed(p, k):
    assert max(run_local(_against_torch, p, ranks_per_node=k)) < 1e-12


def _traffic(ctx, n):
    out = {}
    for algorithm in ("ring", "hierarchical"):
        with comm.tracing() as trace:
            comm.all_reduce(torch.ones(n, dtype=torch.float64), algorithm=algorithm)
        everyone = comm.gather_traces(trace)
        if everyone is not None:
            k = ctx.ranks_per_node
            out[algorithm] = (sum(m.nbytes for m in everyone if m.src // k != m.dst // k),
                              sorted({m.phase for m in everyone}))
    return out


def test_traffic_across_nodes_is_the_textbooks():
    p, k, n = 4, 2, 8 * 3
    b, N = 8 * n, p // k
    got = run_local(_traffic, p, n, ranks_per_node=k)[0]
    assert got["ring"][0] == 2 * (p - 1) * b // k          # N links × 2(p−1) steps × b/p
    assert got["hierarchical"][0] == 2 * (N - 1) * b       # k rings × 2(N−1)/N·b/k × N
    assert got["hierarchical"][1] == ["across nodes all-gather", "across nodes reduce-scatter",
                                      "node all-gather", "node reduce-scatter"]


def test_without_ranks_per_node_the_error_says_what_to_pass():
    def no_topology(ctx):
        import os
        del os.environ["LOCAL_WORLD_SIZE"]
        with pytest.raises(ValueError, match="ranks_per_node=k"):
            comm.all_reduce(torch.ones(3), algorithm="hierarchical")
        with pytest.raises(ValueError, match="dividing the world size p=2, got 3"):
            comm.all_reduce(torch.ones(3), algorithm="hierarchical", ranks_per_node=3)
        return True

    assert run_local(no_topology, 2) == [True, True]


# --- the two-level cost model ---------------------------------------------------------------
INTRA = Params(alpha=5e-6, beta=1 / 2e9, gamma=1 / 8e9)     # 2 GB/s inside a node
INTER = Params(alpha=50e-6, beta=1 / 0.125e9, gamma=1 / 8e9)  # 1 Gbit/s between nodes


@pytest.mark.parametrize("p, k", [(4, 2), (8, 4), (8, 2)])
def test_hierarchical_formula_is_the_closed_form(p, k):
    n, N = 4 << 20, p // k
    c = TwoLevel(INTRA, INTER, k)
    closed = (2 * (k - 1) * INTRA.alpha + 2 * (k - 1) / k * n * INTRA.beta
              + 2 * (N - 1) * INTER.alpha + 2 * (N - 1) / N * n * INTER.beta
              + ((k - 1) / k + (N - 1) / p) * n * INTRA.gamma)
    assert cost_model.predict("hierarchical", n, p, c) == pytest.approx(closed, rel=1e-12)
    flat = 2 * (p - 1) * INTER.alpha + 2 * (p - 1) / p * n * INTER.beta \
        + (p - 1) / p * n * INTER.gamma
    assert cost_model.predict("ring", n, p, c) == pytest.approx(flat, rel=1e-12)


def test_auto_picks_hierarchical_only_where_the_model_says_so():
    slow_link, same_link = TwoLevel(INTRA, INTER, 2), TwoLevel(INTER, INTER, 2)
    assert cost_model.best_algorithm(4 << 20, 4, slow_link) == "hierarchical"
    # one link class everywhere: the flat ring moves fewer bytes (1.5·nβ against 2·nβ)
    assert cost_model.best_algorithm(4 << 20, 4, same_link) != "hierarchical"
    assert cost_model.best_algorithm(4 << 20, 4, INTER) != "hierarchical"
    # with one link class the hierarchical algorithm is the ring on one node
    assert cost_model.predict("hierarchical", 4 << 20, 4, INTER) == \
        cost_model.predict("ring", 4 << 20, 4, INTER)


def test_a_measured_flat_step_prices_the_flat_ring_not_the_hierarchical_one():
    # the flat ring's step as measured while it runs (1 flow each way per node link, the
    # copies inside the nodes beside it), here 20 % slower than the inter class alone
    flat = Params(alpha=60e-6, beta=1.2 / 0.125e9, gamma=1 / 8e9)
    n, p, k = 4 << 20, 4, 2
    without, with_flat = TwoLevel(INTRA, INTER, k), TwoLevel(INTRA, INTER, k, flat)
    assert cost_model.predict("ring", n, p, with_flat) == pytest.approx(
        2 * (p - 1) * flat.alpha + 2 * (p - 1) / p * n * flat.beta + (p - 1) / p * n * flat.gamma,
        rel=1e-12)
    assert cost_model.predict("ring", n, p, with_flat) > cost_model.predict("ring", n, p, without)
    assert cost_model.predict("hierarchical", n, p, with_flat) == \
        cost_model.predict("hierarchical", n, p, without)
    assert set(with_flat.alpha_beta()) == {"intra", "inter", "flat"}
    # where the flat step is as cheap as a node-internal one, the ring wins again
    assert cost_model.best_algorithm(n, p, TwoLevel(INTRA, INTER, k, INTRA)) != "hierarchical"


def _calibrated(ctx):
    costs = comm.calibrate(sizes=(4, 4096, 1 << 16), repeats=1)
    x = torch.full((5000,), float(ctx.rank))
    comm.all_reduce(x, algorithm="auto", costs=costs)
    flat = getattr(costs, "flat", None)
    return (type(costs).__name__, getattr(costs, "ranks_per_node", None), x[0].item(),
            None if flat is None else sorted(flat.exchanges) == [4, 4096, 1 << 16]
            and sorted(flat.exchange_reductions) == [4, 4096, 1 << 16])


def test_calibrate_measures_two_link_classes_on_several_nodes():
    assert run_local(_calibrated, 4, ranks_per_node=2) == [("TwoLevel", 2, 6.0, True)] * 4
    assert run_local(_calibrated, 2)[0][:2] == ("MeasuredCosts", None)   # one node


def _shift(ctx, steps):
    return comm.measure.shift([4, 1 << 12], repeats=1, steps=steps)


@pytest.mark.parametrize("steps", [1, 3])
def test_shift_gives_the_same_step_times_on_every_rank(steps):
    out = run_local(_shift, 3, steps)
    assert all(o == out[0] for o in out) and sorted(out[0]) == [4, 1 << 12]
    assert all(t > 0 for t in out[0].values())


def test_shift_needs_at_least_one_step():
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        comm.measure.shift([4], steps=0)


def _ddp_backward(ctx, algorithm):
    """A DDP-wrapped Linear(7, 3) after one backward on this rank's 4 samples."""
    torch.manual_seed(0)
    net = nn.Linear(7, 3)
    model = DistributedDataParallel(net, algorithm=algorithm)
    g = torch.Generator().manual_seed(ctx.rank)
    x, y = torch.randn(4, 7, generator=g), torch.randn(4, 3, generator=g)
    nn.functional.mse_loss(model(x), y).backward()
    return net, model, x, y


def _ddp_auto(ctx):
    net, model, x, y = _ddp_backward(ctx, "auto")
    picks = [cost_model.best_algorithm(b.nbytes, ctx.world_size, model.costs)
             for b in model.buckets]
    torch.manual_seed(0)            # the reference: torch's average of the local gradients
    ref = nn.Linear(7, 3)
    nn.functional.mse_loss(ref(x), y).backward()
    error = 0.0
    for mine, t in zip(net.parameters(), ref.parameters()):
        dist.all_reduce(t.grad)
        error = max(error, (mine.grad - t.grad / ctx.world_size).abs().max().item())
    return type(model.costs).__name__, model.bucket_algorithms() == picks, error


@pytest.mark.slow   # a full calibration (sizes to 16 MiB) on 4 processes
def test_ddp_auto_on_nodes_runs_what_the_two_level_model_picks():
    out = run_local(_ddp_auto, 4, ranks_per_node=2)
    assert all(o[:2] == ("TwoLevel", True) for o in out)
    assert max(o[2] for o in out) < 1e-6


def _ddp_grads(ctx):
    net, _, x, y = _ddp_backward(ctx, "hierarchical")
    mine = [p.grad.clone() for p in net.parameters()]
    # the reference: torch's own average of each rank's gradient of the same loss
    torch.manual_seed(0)
    ref = nn.Linear(7, 3)
    nn.functional.mse_loss(ref(x), y).backward()
    refs = [p.grad.clone() for p in ref.parameters()]
    for t in refs:
        dist.all_reduce(t)
        t /= ctx.world_size
    return max((a - b).abs().max().item() for a, b in zip(mine, refs))


def test_ddp_averages_gradients_with_it():
    assert max(run_local(_ddp_grads, 4, ranks_per_node=2)) < 1e-6

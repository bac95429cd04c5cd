"""algorithm="auto": the cost model with measured message costs picks the algorithm.

References: the model's own best_algorithm on the same measured table (auto must pick
exactly what the model predicts fastest), torch.distributed.all_reduce for the result,
and, for MeasuredCosts, the closed-form α–β–γ model it must reproduce when its tables are
generated from one α, β, γ.
"""

import math

import pytest
import torch
import torch.distributed as dist

from hpclab import comm
from hpclab.cluster.spawn import run_local
from hpclab.comm import cost_model, measure

pytestmark = [pytest.mark.unit_c]

C = cost_model.Params(alpha=20e-6, beta=0.5e-9, gamma=0.25e-9, beta_duplex=1.2e-9,
                 alpha_duplex=35e-6)
POWERS = [1 << k for k in range(27)]      # 1 B … 64 MiB


def tables_from(c: cost_model.Params, reducing_steps: bool = True) -> cost_model.MeasuredCosts:
    """Every table a calibration measures, sampled from c (the reducing steps: optional)."""
    steps = ({m: c.send_add(m) for m in POWERS}, {m: c.exchange_add(m) for m in POWERS})
    return cost_model.MeasuredCosts({m: c.send(m) for m in POWERS},
                               {m: c.exchange(m) for m in POWERS},
                               {m: c.add(m) for m in POWERS},
                               *(steps if reducing_steps else (None, None)))


@pytest.mark.parametrize("p", [2, 3, 4, 8])
@pytest.mark.parametrize("algorithm", ["naive", "ring", "ring_pipelined", "recursive_doubling",
                                       "halving_doubling", "tree", "parameter_server"])
@pytest.mark.parametrize("reducing_steps", [True, False])
def test_measured_costs_reproduce_the_closed_forms(p, algorithm, reducing_steps):
    """Tables sampled from α + mβ at powers of two give back the α–β–γ prediction wherever
    every message the schedule sends is a measured size (n and p powers of two), and stay
    within the log–log interpolation error elsewhere; with or without the reducing-step
    tables (without them a reducing step is priced as its two parts)."""
    measured = tables_from(C, reducing_steps)
    for n in (4096, 1 << 20, 16 << 20, 64 << 20):
        exact = cost_model.predict(algorithm, n, p, C)
        got = cost_model.predict(algorithm, n, p, measured)
        rel = 1e-9 if p & (p - 1) == 0 else 0.05
        assert got == pytest.approx(exact, rel=rel), (algorithm, n, p)


def test_reducing_steps_are_priced_from_their_own_tables():
    """A step that adds what arrives is read off its measured table when there is one
    (on one host it costs more than its parts), else priced as send + add."""
    parts = cost_model.MeasuredCosts({8: 1.0}, {8: 2.0}, {8: 0.5})
    assert parts.send_add(8) == 1.5 and parts.exchange_add(8) == 2.5
    steps = cost_model.MeasuredCosts({8: 1.0}, {8: 2.0}, {8: 0.5}, {8: 3.0}, {8: 4.0})
    assert steps.send_add(8) == 3.0 and steps.exchange_add(8) == 4.0
    # the ring on 2 ranks: one exchange that adds, one that does not
    assert cost_model.predict("ring", 16, 2, steps) == pytest.approx(4.0 + 2.0)
    # recursive doubling on 2 ranks: one exchange that adds; the tree: send_add + send
    assert cost_model.predict("recursive_doubling", 8, 2, steps) == pytest.approx(4.0)
    assert cost_model.predict("tree", 8, 2, steps) == pytest.approx(3.0 + 1.0)


def test_interpolation_and_extrapolation():
    costs = cost_model.MeasuredCosts({8: 1.0, 32: 4.0}, {8: 2.0, 32: 2.0}, {8: 1e-3, 32: 4e-3})
    assert costs.send(16) == pytest.approx(2.0)          # log-log: t ∝ m between 8 and 32
    assert costs.send(64) == pytest.approx(8.0)          # proportional beyond the largest
    assert costs.send(1) == 1.0                          # latency floor below the smallest
    assert costs.exchange(16) == pytest.approx(2.0)
    assert costs.add(0) == 0.0


def test_best_algorithm_follows_the_costs():
    """Cheap latency, dear bandwidth: tree at 4 B; duplex as fast as one way: ring at
    64 MiB on 8 ranks (2(p−1)/p·n bytes per rank against the tree's 2·log₂p·n)."""
    full_duplex = tables_from(cost_model.Params(alpha=20e-6, beta=0.5e-9, gamma=0.25e-9))
    assert cost_model.best_algorithm(64 << 20, 8, full_duplex) in ("ring", "halving_doubling")
    assert cost_model.best_algorithm(4, 8, full_duplex) == "recursive_doubling"


def auto_on_rank(ctx, sizes):
    costs = comm.calibrate(timeout=30)
    table = tuple(sorted((getattr(costs, name) or {}).items()) for name in
                  ("one_way", "exchanges", "reductions", "one_way_reductions",
                   "exchange_reductions"))
    results = []
    for numel in sizes:
        g = torch.Generator().manual_seed(numel + ctx.rank)
        x = torch.randint(-1000, 1000, (numel,), generator=g)
        expected = x.clone()
        dist.all_reduce(expected)
        with comm.tracing() as trace:
            comm.all_reduce(x, algorithm="auto", costs=costs)
        picked = costs.picks[numel * 8, ctx.world_size]   # what all_reduce chose
        ours = [a for a in cost_model.FORMULAS if a != "torch"]
        model_pick = cost_model.best_algorithm(numel * 8, ctx.world_size, costs, ours)
        traced = {m.algorithm for m in trace.messages}
        results.append((numel, picked, model_pick, traced, torch.equal(x, expected)))
    return table, results


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_auto_picks_the_models_choice_on_every_rank(world_size):
    sizes = [1, 100, 4096, 300_000, 2_000_000]
    out = run_local(auto_on_rank, world_size, sizes, timeout=120)
    tables = [t for t, _ in out]
    assert all(t == tables[0] for t in tables), "every rank must hold the same cost table"
    picks = [[r[1] for r in results] for _, results in out]
    assert all(p == picks[0] for p in picks), f"ranks picked differently: {picks}"
    for rank, (_, results) in enumerate(out):
        for numel, picked, model_pick, traced, equal in results:
            assert equal, f"rank {rank}: auto all-reduce of {numel} int64 != dist.all_reduce"
            assert picked == model_pick, (numel, picked, model_pick)
            if world_size > 1:
                assert traced == {picked}, f"{numel}: ran {traced}, chose {picked}"
    if world_size > 1:   # every table measured, at every calibration size
        for measured in tables[0]:
            assert [m for m, _ in measured] == list(measure.CALIBRATION_SIZES)
            assert all(t > 0 and math.isfinite(t) for _, t in measured)


def test_every_algorithm_has_a_cost_formula():
    assert set(cost_model.FORMULAS) == set(comm.ALGORITHMS["all_reduce"])


def test_picks_are_kept_on_the_costs_object():
    costs = tables_from(C)
    first = cost_model.best_algorithm(1 << 20, 4, costs)
    assert costs.picks == {(1 << 20, 4): first}
    assert cost_model.best_algorithm(1 << 20, 4, costs) == first


def test_unknown_algorithm_lists_auto():
    with pytest.raises(ValueError, match="auto"):
        comm.all_reduce(torch.ones(3), algorithm="fastest")

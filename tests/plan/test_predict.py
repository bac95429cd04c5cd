"""The planner's model term by term against hand-computed α–β–γ formulas and the memory
calculator; the ranking marks configurations that do not fit."""

import math

import pytest

from hpclab.comm.cost_model import Params, ring
from hpclab.flops import transformer_flops_per_token
from hpclab.memory import (
    FP32,
    GPT3_175B,
    MIXED,
    Parallelism,
    Training,
    TransformerShape,
    rank_parameters,
    stage_memories,
    tiny_shape,
)
from hpclab.plan import Layout, Machine, Workload, plan, predict_layout, table
from hpclab.plan.datasheet import A100, DatasheetCompute, link_costs
from hpclab.plan.layer_times import LayerTimes
from hpclab.plan.predict import all_gather, memory, reduce_scatter
from hpclab.plan.report import TINY

pytestmark = [pytest.mark.unit_d]

ALPHA, BETA, GAMMA = 20e-6, 1e-9, 0.25e-9
COSTS = Params(ALPHA, BETA, GAMMA)
SHAPE = tiny_shape(TINY)             # L = 4, h = 64, a = 4, v = 64, s = 64
B, S, E = 16, 64, 4                  # global batch, sequence, fp32 activations
WORK = Workload(SHAPE, B, S)
T_BLOCK, T_EMBED, T_HEAD, T_OPT = 2e-3, 1e-4, 5e-4, 1e-8


def layer_times():
    """Known layer times at every (b, t) (as measure_layer_times returns them)."""
    bs = (1, 2, 4, 8, 16)
    return LayerTimes(seq=S, blocks={(b, t): T_BLOCK * b / t for b in bs for t in (1, 2, 4)},
                      embed={b: T_EMBED * b for b in bs}, head_times={b: T_HEAD * b for b in bs},
                      optimizer_per_parameter=T_OPT)


MACHINE = Machine(layer_times(), COSTS)
PSI = SHAPE.parameters


def ar(n, p):      # the ring all-reduce by hand: 2(p−1) steps of n/p bytes, p−1 adds
    return 2 * (p - 1) * (ALPHA + n / p * BETA) + (p - 1) * n / p * GAMMA


def test_data_parallel_terms_are_the_ring_all_reduce():
    x = predict_layout(WORK, Layout(dp=4), MACHINE)
    assert x.dp == pytest.approx(ar(4 * PSI, 4) + ar(8, 4), rel=1e-12)
    assert x.tp == x.pp == 0 and x.bubble == 0
    b = B // 4
    assert x.compute == pytest.approx(4 * T_BLOCK * b + T_EMBED * b + T_HEAD * b)
    assert x.optimizer == pytest.approx(T_OPT * PSI)
    assert x.step == pytest.approx(x.compute + x.dp + x.optimizer)


@pytest.mark.parametrize("zero", [1, 2, 3])
def test_zero_terms_are_reduce_scatter_and_all_gathers(zero):
    x = predict_layout(WORK, Layout(dp=4, zero=zero), MACHINE)
    rs = 3 * (ALPHA + PSI * BETA + PSI * GAMMA)          # (p−1) steps of 4Ψ/4 bytes
    ag = 3 * (ALPHA + PSI * BETA)
    assert x.dp == pytest.approx(rs + (2 if zero == 3 else 1) * ag + ar(8, 4), rel=1e-12)
    assert x.optimizer == pytest.approx(T_OPT * PSI / 4)
    # ZeRO-1's reduce-scatter + all-gather is the ring all-reduce, term for term
    assert reduce_scatter(4 * PSI, 4, COSTS) + all_gather(4 * PSI, 4, COSTS) == \
        pytest.approx(ring(4 * PSI, 4, COSTS), rel=1e-12)


@pytest.mark.parametrize("sp", [False, True])
def test_tensor_parallel_terms_are_four_all_reduces_per_layer(sp):
    x = predict_layout(WORK, Layout(dp=2, tp=2, sequence_parallel=sp), MACHINE)
    b = B // 2
    a = b * S * SHAPE.hidden * E
    per_layer = 4 * ar(a, 2) if not sp else 4 * (
        (ALPHA + a / 2 * BETA + a / 2 * GAMMA) + (ALPHA + a / 2 * BETA))
    assert x.tp == pytest.approx(SHAPE.layers * per_layer, rel=1e-12)
    psi = rank_parameters(SHAPE, Parallelism(dp=2, tp=2))
    assert x.dp == pytest.approx(ar(4 * psi, 2) + ar(8, 2), rel=1e-12)
    assert x.compute == pytest.approx(4 * T_BLOCK * b / 2 + T_EMBED * b + T_HEAD * b)


@pytest.mark.parametrize("schedule,v", [("gpipe", 1), ("1f1b", 1), ("interleaved", 2)])
def test_pipeline_terms_bubble_and_hops(schedule, v):
    p, m = 2, 4
    x = predict_layout(WORK, Layout(dp=2, pp=p, micro_batches=m, schedule=schedule), MACHINE)
    b = B // (2 * m)
    a = b * S * SHAPE.hidden * E
    slots = v * m + p - 1
    assert x.bubble == pytest.approx((p - 1) / slots)
    stage = max(2 * T_BLOCK * b + T_EMBED * b, 2 * T_BLOCK * b + T_HEAD * b)
    assert x.compute == pytest.approx(slots * stage / v)
    # (gpipe, 1f1b) the bubble formula: m·T_stage / (1 − (p−1)/(m+p−1))
    if v == 1:
        assert x.compute == pytest.approx(m * stage / (1 - x.bubble))
    assert x.pp == pytest.approx(slots * 2 * (2 * ALPHA + (a + 96) * BETA))   # + header
    psi = max(rank_parameters(SHAPE, Parallelism(dp=2, pp=2), i) for i in range(2))
    loss = ar(8, 2) + math.ceil(math.log2(p)) * (ALPHA + 8 * BETA)
    assert x.dp == pytest.approx(ar(4 * psi, 2) + loss, rel=1e-12)


@pytest.mark.parametrize("layout", [Layout(dp=4, zero=z) for z in range(4)]
                         + [Layout(dp=2, tp=2, sequence_parallel=True),
                            Layout(dp=2, pp=2, micro_batches=4, schedule="gpipe", zero=1),
                            Layout(tp=2, pp=2, micro_batches=2, schedule="1f1b"),
                            Layout(dp=2, pp=2, micro_batches=4, schedule="interleaved")],
                         ids=str)
def test_memory_is_the_calculators_fullest_stage(layout):
    par = Parallelism(dp=layout.dp, tp=layout.tp, pp=layout.pp, sp=layout.sequence_parallel,
                      zero=layout.zero, microbatches=layout.micro_batches,
                      schedule=layout.schedule, chunks=2)
    run = Training(seq=S, micro_batch=B // (layout.dp * layout.micro_batches),
                   precision=FP32, optimizer="adam")
    expected = max(r.total for r in stage_memories(SHAPE, run, par))
    assert memory(WORK, layout).total == expected
    assert predict_layout(WORK, layout, MACHINE).memory.total == expected


def test_ranking_marks_what_does_not_fit():
    rows = plan(world=4, model="tiny", machine=MACHINE)
    assert [r.predicted for r in rows] == sorted(r.predicted for r in rows)
    assert all(r.fits for r in rows)              # no budget: everything fits
    totals = sorted(r.prediction.memory.total for r in rows)
    budget = totals[len(totals) // 2]
    rows = plan(world=4, model="tiny", machine=MACHINE, memory_gb=budget / 1e9)
    assert {r.fits for r in rows} == {True, False}
    assert all(r.fits == (r.prediction.memory.total <= budget) for r in rows)
    text = table(rows)
    assert text.count("| NO |") == sum(not r.fits for r in rows)
    assert text.count("\n") == len(rows) + 1


def test_datasheet_compute_is_the_model_flops():
    """L blocks + the head at peak·MFU are 6N + 12·L·h·s FLOPs per token (hpclab.flops)."""
    c = DatasheetCompute(A100, GPT3_175B, mfu=0.5)
    b, s, L, h = 2, 2048, GPT3_175B.layers, GPT3_175B.hidden
    seconds = L * c.block(b, s, 1) + c.head(b, s, 1)
    n_weights = L * GPT3_175B.layer_matrices() + h * GPT3_175B.vocab
    flops = b * s * transformer_flops_per_token(n_weights, L, h, s)
    assert seconds * A100.peak_flops * 0.5 == pytest.approx(flops, rel=1e-12)
    assert c.block(b, s, 8) == pytest.approx(c.block(b, s, 1) / 8)


def test_links_nvlink_inside_a_node_infiniband_across():
    assert link_costs(A100, 8).beta == pytest.approx(1 / 300e9)
    assert link_costs(A100, 16).beta == pytest.approx(1 / 25e9)


def test_gpt3_on_paper_pure_data_parallel_does_not_fit():
    rows = plan(world=64, model="gpt3-175b", gpu="a100", batch=512)
    by_layout = {r.layout: r for r in rows}
    assert not by_layout[Layout(dp=64)].fits          # 16Ψ = 2.8 TB per GPU at ZeRO 0
    assert by_layout[Layout(dp=64)].prediction.memory.total > 2.8e12
    assert any(r.fits for r in rows)
    work = Workload(GPT3_175B, 512, 2048, precision=MIXED, recompute="selective")
    assert rows[0].predicted == predict_layout(work, rows[0].layout, Machine(
        DatasheetCompute(A100, GPT3_175B), lambda span: link_costs(A100, span),
        A100.memory_bytes)).step


def test_layer_times_name_what_was_not_measured():
    times = layer_times()
    with pytest.raises(KeyError, match=r"\(3, 1\)"):
        times.block(3, S, 1)
    with pytest.raises(ValueError, match="s=32"):
        times.block(4, 32, 1)
    shape = TransformerShape(layers=4, hidden=64, heads=4, vocab=64)
    with pytest.raises(ValueError, match="B=15"):
        predict_layout(Workload(shape, 15, S), Layout(dp=2), MACHINE)

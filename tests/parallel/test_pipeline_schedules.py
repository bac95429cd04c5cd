"""GPipe, 1F1B and interleaved 1F1B: the lists, their timelines, and runs on real ranks.

- The lists (no processes): every rank runs each F and B once, B after its F; the ideal
  timeline of equal stages (`simulate`, t_b = 2 t_f) has exactly the bubble of the
  formulas, (p−1)/(m+p−1) and (p−1)/(v·m+p−1); the peak of micro-batches in flight is
  the memory calculator's n_i (GPipe m, 1F1B min(m, p − r)) and, interleaved,
  min(v·m, 2(p−r−1) + (v−1)p + 1) chunks.
- On p = 2 and 4 ranks (run_local, float64), each schedule's gradients and loss equal the
  single-process ones, the measured peak in flight is the list's, and each rank's traced
  messages are the ones its list implies, in its order.
- A schedule whose ranks wait for each other is found by `simulate` and, on ranks, fails
  with a CommTimeout naming the rank instead of hanging.
"""

import pytest
import torch
from torch import nn

from hpclab import comm
from hpclab.bench.pipeline import measure
from hpclab.cluster.spawn import SpawnError, run_local
from hpclab.memory import Parallelism
from hpclab.parallel.pipeline import bubble_fraction, gpipe, split_sequential
from hpclab.parallel.pipeline_1f1b import in_flight, one_f_one_b
from hpclab.parallel.pipeline_executor import PipelineTimeline, run_schedule
from hpclab.parallel.pipeline_interleaved import bubble_fraction as interleaved_bubble
from hpclab.parallel.pipeline_interleaved import in_flight as interleaved_in_flight
from hpclab.parallel.pipeline_interleaved import (
    interleaved_1f1b,
    split_interleaved,
)
from hpclab.parallel.pipeline_schedule import (
    Action,
    as_actions,
    bubble,
    check,
    peak_in_flight,
    simulate,
    table,
)

pytestmark = [pytest.mark.unit_d]

SCHEDULES = {"gpipe": gpipe, "1f1b": one_f_one_b,
             "interleaved": lambda p, m, r: interleaved_1f1b(p, m, r, v=2)}


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_lists_are_valid_and_their_timelines_have_the_formulas_bubble(p, k):
    m = k * p
    for name, schedule in SCHEDULES.items():
        v = 2 if name == "interleaved" else 1
        lists = [schedule(p, m, r) for r in range(p)]
        check(lists, m, v)
        theory = interleaved_bubble(p, m, v) if v > 1 else bubble_fraction(p, m)
        assert bubble(simulate(lists)) == pytest.approx(theory, abs=1e-12), (name, p, m)
        peaks = [peak_in_flight(a) for a in lists]
        if v == 1:
            calculator = Parallelism(pp=p, microbatches=m, schedule=name).in_flight
            assert peaks == [calculator(r) for r in range(p)], (name, p, m)
        else:
            assert peaks == [interleaved_in_flight(p, m, r, v) for r in range(p)], (p, m)


def test_1f1b_phases_and_interleaved_rules():
    assert repr(one_f_one_b(4, 6, 1)) == "[F0, F1, F2, B0, F3, B1, F4, B2, F5, B3, B4, B5]"
    assert one_f_one_b(4, 2, 0) == gpipe(4, 2, 0)[:2] + [Action("B", 0), Action("B", 1)]
    assert [in_flight(4, 8, r) for r in range(4)] == [4, 3, 2, 1]
    assert table(one_f_one_b, 2, 2).splitlines() == ["rank 0: F0 F1 B0 B1",
                                                     "rank 1: F0 B0 F1 B1"]
    assert repr(interleaved_1f1b(2, 4, 0, v=2)[:4]) == "[F0, F1, F0.1, F1.1]"
    with pytest.raises(ValueError, match="multiple of p"):
        interleaved_1f1b(4, 6, 0, v=2)
    with pytest.raises(ValueError, match="before its forward"):
        check([[("B", 0), ("F", 0)]], 1)
    with pytest.raises(ValueError, match=r"rank 1 never runs \[B0\]"):
        check([gpipe(2, 2, 0), gpipe(2, 2, 1)[:-1]], 2)


def _warmup_r(p, m, r):
    """A wrong 1F1B: warm-up r instead of p − r − 1 forwards (rank r+1 needs more
    activations before its first backward than rank r sends before its own)."""
    w = min(r, m)
    out = [("F", i) for i in range(w)]
    for k in range(m - w):
        out += [("F", w + k), ("B", k)]
    return out + [("B", i) for i in range(m - w, m)]


def test_a_deadlocking_order_is_found_by_simulate():
    with pytest.raises(ValueError, match="deadlock: rank 0 at B0 waits for B0 of stage 1"):
        simulate([_warmup_r(3, 3, r) for r in range(3)])


def _model(pieces, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Linear(6, 8)]
    for _ in range(2 * pieces - 2):
        layers += [nn.Tanh(), nn.Linear(8, 8)]
    return nn.Sequential(*layers, nn.Linear(8, 3)).double()


def _data(batch=12):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(batch, 6, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (batch,), generator=g))


def _all_schedules(ctx, m):
    """Each schedule on this rank: max gradient error to one process, loss, peaks, trace."""
    p, r = ctx.world_size, ctx.rank
    x, y = _data()
    out = {}
    for name, schedule in SCHEDULES.items():
        v = 2 if name == "interleaved" else 1
        ref = _model(p * v)
        nn.functional.cross_entropy(ref(x), y).backward()
        ref_loss = float(nn.functional.cross_entropy(ref(x), y))
        chunks = (split_interleaved(_model(p * v), p, v, r) if v > 1
                  else [split_sequential(_model(p), p)[r]])
        ref_chunks = (split_interleaved(ref, p, v, r) if v > 1
                      else [split_sequential(ref, p)[r]])
        actions, timeline = schedule(p, m, r), PipelineTimeline()
        with comm.tracing() as trace:
            loss = run_schedule(actions, chunks, ctx, x if r == 0 else None,
                                y if r == p - 1 else None, nn.functional.cross_entropy, m,
                                timeline=timeline, name=name)
        error = max((a.grad - b.grad).abs().max().item() / (1 + b.grad.abs().max().item())
                    for c, d in zip(chunks, ref_chunks)
                    for a, b in zip(c.parameters(), d.parameters()))
        out[name] = {"error": error, "loss": loss, "ref_loss": ref_loss,
                     "peak": timeline.peak_in_flight,
                     "order": [(e.kind, e.micro, e.chunk) for e in timeline.events],
                     "sent": [(msg.step, msg.phase, msg.chunk, msg.segment, msg.dst)
                              for msg in trace]}
    return out


def _expected_messages(actions, p, r, v):
    sent = []
    for step, a in enumerate(as_actions(actions)):
        s = a.chunk * p + r
        if a.kind == "F" and s < p * v - 1:
            sent.append((step, "forward", a.micro, a.chunk, (r + 1) % p))
        if a.kind == "B" and s > 0:
            sent.append((step, "backward", a.micro, a.chunk, (r - 1) % p))
    return sent


@pytest.mark.parametrize("p, m", [(2, 4), (4, 8)])
def test_every_schedule_equals_one_process_on_ranks(p, m):
    results = run_local(_all_schedules, p, m, timeout=120)
    for r, res in enumerate(results):
        for name, got in res.items():
            v = 2 if name == "interleaved" else 1
            actions = SCHEDULES[name](p, m, r)
            assert got["error"] < 1e-12, (name, r, got["error"])
            assert got["order"] == [tuple(a) for a in actions], (name, r)
            assert got["peak"] == peak_in_flight(actions), (name, r)
            assert got["sent"] == _expected_messages(actions, p, r, v), (name, r)
            if r == p - 1:
                assert got["loss"] == pytest.approx(got["ref_loss"], rel=1e-12), name
            else:
                assert got["loss"] is None
    assert [res["1f1b"]["peak"] for res in results] == [min(m, p - r) for r in range(p)]
    assert all(res["gpipe"]["peak"] == m for res in results)


def _deadlocked(ctx):
    stage = split_sequential(_model(ctx.world_size), ctx.world_size)[ctx.rank]
    x, y = _data()
    last = ctx.rank == ctx.world_size - 1
    run_schedule(_warmup_r(ctx.world_size, 3, ctx.rank), stage, ctx, x if ctx.rank == 0 else None,
                 y if last else None, nn.functional.cross_entropy, 3, timeout=2.0)


def test_a_deadlocking_order_times_out_naming_the_rank():
    with pytest.raises(SpawnError, match=r"CommTimeout: rank \d on host .* waiting to receive"):
        run_local(_deadlocked, 3, timeout=30)


def test_bench_measures_every_schedule():
    """`hpclab bench pipeline` on 2 ranks, tiny stages: a row per schedule, its peaks the
    calculator's (the bubble ratios are printed, not asserted)."""
    rows = measure(p=2, m=2, v=2, t_f=0.002, repeats=1)
    assert [row["schedule"] for row in rows] == ["gpipe", "1f1b", "interleaved"]
    assert all(row["peak"] == row["predicted"] for row in rows), rows
    assert all(0 <= row["measured"] < 1 for row in rows), rows


def _empty_micro_batches(ctx):
    """m > batch: tensor_split gives empty micro-batches, whose messages are skipped."""
    p, r = ctx.world_size, ctx.rank
    stage = split_sequential(_model(p), p)[r]
    x, y = _data(batch=3)
    loss = run_schedule(one_f_one_b(p, 4, r), stage, ctx, x if r == 0 else None,
                        y if r == p - 1 else None, nn.functional.cross_entropy, 4)
    ref = _model(p)
    ref_loss = nn.functional.cross_entropy(ref(x), y)
    ref_loss.backward()
    for a, b in zip(stage.parameters(), split_sequential(ref, p)[r].parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)
    return None if loss is None else (loss, float(ref_loss))


def test_empty_micro_batches_are_skipped():
    loss, ref = run_local(_empty_micro_batches, 2, timeout=60)[-1]
    assert loss == pytest.approx(ref, rel=1e-12)

"""The dashboard's state and widget, fed with StepRecords from real training.

References: the numbers the dashboard shows are recomputed here directly from the
records with numpy (mean loss over ranks, summed throughput, time split means).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import hpclab
from hpclab.problems import digits_loaders, make_mlp
from hpclab.widgets import Dashboard, DashboardState
from hpclab.widgets.dashboard import FIT_BUDGET
from hpclab.widgets.renderer import Renderer

pytestmark = [pytest.mark.unit_d]


def _wait_for(cond, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_state_single_process_matches_records(train_records):
    recs = train_records(30)
    st = DashboardState(total_steps=60, window=10)
    st.add(recs)
    steps, loss = st.loss_aggregate()
    assert steps == [r.step for r in recs]
    np.testing.assert_allclose(loss, [r.loss for r in recs], rtol=0, atol=0)
    assert st.n_points == 30 and st.steps_done == 30 and st.progress == pytest.approx(0.5)
    last = recs[-10:]
    want = (np.mean([r.t_forward + r.t_backward for r in last]),
            np.mean([r.t_comm for r in last]), np.mean([r.t_optim for r in last]))
    np.testing.assert_allclose(st.time_split()[:3], want, rtol=1e-12)
    vs, _ = st.val_aggregate()
    assert vs == [r.step for r in recs if "val_loss" in r.extra]
    assert st.eta() is not None and st.eta() > 0


@pytest.mark.cluster
def test_state_two_ranks_aggregates(dp_records):
    r0, r1 = dp_records(2, 12)
    st = DashboardState(total_steps=12)
    st.add([r for pair in zip(r0, r1) for r in pair][::-1])       # any arrival order
    _, loss = st.loss_aggregate()
    np.testing.assert_allclose(loss, [(a.loss + b.loss) / 2 for a, b in zip(r0, r1)],
                               rtol=1e-12)
    _, thr = st.throughput_aggregate()
    np.testing.assert_allclose(thr, [a.samples_per_s + b.samples_per_s
                                     for a, b in zip(r0, r1)], rtol=1e-12)
    assert st.world_size == 2 and st.progress == 1.0
    assert all(r.t_comm > 0 for r in r0 + r1), "data-parallel records carry comm time"
    assert st.time_split(1)[1] == pytest.approx(np.mean([r.t_comm for r in r1[-20:]]))


def test_state_rejects_bad_sizes():
    with pytest.raises(ValueError, match="total_steps must be >= 1"):
        DashboardState(total_steps=0)
    with pytest.raises(ValueError, match="window must be >= 1"):
        DashboardState(window=0)


def test_dashboard_as_fit_callback_draws_every_step():
    torch.manual_seed(0)
    train, _ = digits_loaders(batch_size=32)
    model = make_mlp(64, (32,), 10, seed=0)
    dash = Dashboard(total_steps=25, max_latency=0.1)
    history = hpclab.train.fit(model, hpclab.optim.SGD(model.parameters(), lr=0.1), train,
                               torch.nn.functional.cross_entropy, steps=25,
                               callbacks=[dash], progress=False)
    # the background renderer catches up on its own (no flush)
    assert _wait_for(lambda: dash.points.value == 25), dash.points.value
    assert dash.finished and dash.progress.value == 1.0
    assert dash.state.loss_aggregate()[1] == [r.loss for r in history.records]
    assert dash.renderer.stats.draws >= 1 and dash.renderer.error is None
    assert "step 25/25" in dash.status.value
    dash.finish()
    assert not dash.renderer.running and dash.stop_button.description == "done"


def test_a_fit_callback_draws_on_a_smaller_budget_than_a_job():
    assert Dashboard().renderer.budget == FIT_BUDGET < 0.03
    assert Dashboard(budget=0.2).renderer.budget == 0.2


def test_stop_button_ends_fit_early():
    train, _ = digits_loaders(batch_size=32)
    model = make_mlp(64, (32,), 10, seed=0)
    dash = Dashboard(total_steps=50)
    dash.stop_button.click()
    history = hpclab.train.fit(model, hpclab.optim.SGD(model.parameters(), lr=0.1), train,
                               torch.nn.functional.cross_entropy, steps=50,
                               callbacks=[dash], progress=False)
    assert history.stop_reason == "callback" and len(history.records) == 1
    dash.finish()
    assert dash.stop_button.description == "stopped"


def test_renderer_coalesces_and_keeps_errors():
    calls = []
    r = Renderer(lambda: (calls.append(1), time.sleep(0.02)), max_latency=0.2, budget=0.5)
    r.start()
    for _ in range(200):
        r.poke()
    r.stop()
    assert 1 <= len(calls) < 50, "pokes between draws must collapse into one draw"
    # tick() on the calling thread draws only when there is news and a draw is due
    n = len(calls)
    assert not r.tick()
    r.poke()
    r.stats.last_end = 0.0
    assert r.tick() and len(calls) == n + 1

    def broken():
        raise ZeroDivisionError("bad plot")
    r = Renderer(broken).start()
    r.poke()
    assert _wait_for(lambda: r.error is not None)
    assert isinstance(r.error, ZeroDivisionError)
    with pytest.raises(ValueError, match="budget must be in"):
        Renderer(broken, budget=0)


def test_renderer_keeps_to_its_budget_whatever_each_draw_costs():
    # draws that alternate cheap and expensive, as line updates and full redraws do; a
    # training thread ticks while the renderer thread also runs: never two draws at once
    drawing, overlaps, costs = [0], [], iter([0.005, 0.06] * 1000)

    def update():
        drawing[0] += 1
        overlaps.append(drawing[0])
        time.sleep(next(costs))
        drawing[0] -= 1

    budget, burst = 0.1, 0.05
    r = Renderer(update, max_latency=0.05, budget=budget, min_interval=0.0,
                 max_interval=30.0, burst=burst).start()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 3.0:
        r.poke()
        r.tick()
        time.sleep(0.001)
    elapsed = time.perf_counter() - t0
    r.stop()
    assert max(overlaps) == 1, "the thread and tick() drew at the same time"
    assert r.stats.draws >= 4
    # at most budget·T + burst, plus the draw that overdrew the credit and the last one
    # stop() makes (each ≤ 60 ms, or more when a loaded machine oversleeps: 50 ms margin);
    # without the budget the two threads would have drawn for most of the 3 s
    assert r.stats.draw_time <= budget * elapsed + burst + 2 * (0.06 + 0.05)
    assert r.credit() <= burst


def test_renderer_draws_the_first_record_at_once_then_waits_out_its_debt():
    r = Renderer(lambda: time.sleep(0.05), max_latency=0.1, budget=0.05, burst=0.02)
    assert r.due() and r.credit() == pytest.approx(0.02, abs=1e-3)
    r.draw_now()
    debt = -r.credit()
    assert debt >= 0.05 - 0.02 - 1e-3   # the draw took ≥ 50 ms of a 20 ms credit
    # the debt is paid back at 0.05 s per second (≈ 0.6 s here), longer than max_latency
    assert r.wait_time() == pytest.approx(min(debt / 0.05, r.max_interval), abs=0.05)
    assert r.wait_time() > r.max_latency
    with pytest.raises(ValueError, match="burst must be >= 0 seconds, got -1"):
        Renderer(lambda: None, burst=-1)


def test_headless_bundle_and_snapshot_are_pictures(train_records):
    dash = Dashboard(total_steps=10)
    dash(train_records(10))
    dash.finish()
    bundle = dash._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["image/png"] and bundle["text/html"].startswith("<img")
    png = dash.snapshot().data
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_smooth_and_stepped_limits():
    from hpclab.widgets.dashboard_plot import _stepped, smooth

    y = np.array([4.0, 2.0, 6.0, 8.0, 1.0])
    np.testing.assert_allclose(smooth(y, 3), [np.mean(y[max(0, i - 2):i + 1]) for i in range(5)])
    assert _stepped(0, 10, (0, 30)) == (0, 30)                  # fits, fills > 1/4: keep
    lo, hi = _stepped(0, 40, (0, 30))                          # overflow: grow with room
    assert lo < 0 and hi > 40
    assert _stepped(0, 1, (0, 30), zero_floor=True)[1] < 30    # fills < 1/4: zoom in


def test_static_only_mode_shows_just_a_picture(monkeypatch, train_records):
    monkeypatch.setenv("HPCLAB_WIDGETS", "static")
    dash = Dashboard(total_steps=5)
    dash(train_records(5))
    dash.finish()
    bundle = dash._repr_mimebundle_()
    assert set(bundle) == {"image/png", "text/html"}


def test_thin_keeps_the_ends_and_at_most_most_points():
    from hpclab.widgets.dashboard_plot import thin

    xs, ys = thin(list(range(5000)), list(range(5000)), most=600)
    assert len(xs) <= 600 + 1 and xs[0] == 0 and xs[-1] == 4999 and xs == ys

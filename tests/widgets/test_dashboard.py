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
from hpclab.widgets.dashboard import _fmt_rate
from hpclab.widgets.dashboard_plot import rank_color, smooth
from hpclab.widgets.liveplot import TIMER_LAG, LivePlot, compact

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


def test_dashboard_as_fit_callback_streams_every_step():
    torch.manual_seed(0)
    train, _ = digits_loaders(batch_size=32)
    model = make_mlp(64, (32,), 10, seed=0)
    dash = Dashboard(total_steps=25)
    history = hpclab.train.fit(model, hpclab.optim.SGD(model.parameters(), lr=0.1), train,
                               torch.nn.functional.cross_entropy, steps=25,
                               callbacks=[dash], progress=False)
    # the timer thread sends the last points on its own (no flush, no finish)
    assert _wait_for(lambda: dash.plot.stats.points == 2 * 25), dash.plot.stats
    steps, losses = dash.plot._data["loss"]
    assert steps == [r.step for r in history.records]
    assert losses == [compact(r.loss) for r in history.records]
    _, thr = dash.plot._data["thr"]
    np.testing.assert_allclose(thr, smooth([r.samples_per_s for r in history.records]),
                               rtol=1e-4)
    assert _wait_for(lambda: dash.finished)
    assert dash.progress.value == 1.0 and "✔ done" in dash.status.value
    assert "25 steps" in dash.status.value and "samples/s" in dash.status.value
    dash.finish()
    assert dash.stop_button.description == "done"
    assert len(dash.latencies) == 25 and all(t >= 0 for t in dash.latencies)


def test_seconds_taken_is_the_time_in_its_calls_and_its_threads_cpu(train_records):
    """Dashboard.seconds_taken (what `hpclab bench dashboard` reads the 1 % bar off): the
    wall time inside its calls, timed around each call here, plus its own threads' CPU."""
    recs = train_records(60)
    dash = Dashboard(total_steps=60, interval=0.02)
    outside, proc0, main0 = 0.0, time.process_time(), time.thread_time()
    for i, rec in enumerate(recs):
        t0 = time.perf_counter()
        dash(rec)
        outside += time.perf_counter() - t0
        time.sleep(0.002 if i % 15 else 0.06)   # the pauses leave sends to the timer thread
    n_val = sum("val_loss" in r.extra for r in recs)
    assert _wait_for(lambda: dash.plot.stats.points == 2 * 60 + n_val), dash.plot.stats
    # timed here, a call also holds the call and return, and any wait for the GIL while
    # the dashboard's own threads send
    assert 0.7 * outside < dash.on_step.seconds <= outside, (dash.on_step.seconds, outside)
    assert dash.plot.stats.timer_messages > 0 and dash.plot.stats.timer_cpu > 0
    others = (time.process_time() - proc0) - (time.thread_time() - main0)
    assert dash.on_step.seconds < dash.seconds_taken <= outside + others, \
        (dash.seconds_taken, outside, others)
    dash.finish()


def test_the_timer_leaves_the_sending_to_a_caller_that_pushes_often():
    """A caller pushing every ms sends every message itself (a second thread sending at
    the due times would take the GIL from a training loop); once it stops, the timer
    sends what is left within interval·(1 + TIMER_LAG)."""
    interval = 0.05
    plot = LivePlot([{"id": "p"}], series=[{"id": "s", "panel": "p"}], interval=interval)
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < 0.5:
        plot.append("s", [n], [n])
        plot.push()
        n += 1
        time.sleep(0.001)
    # (a stall of the caller longer than interval·TIMER_LAG, on a loaded machine, may
    # leave one or two to the timer)
    assert plot.stats.messages >= 5 and plot.stats.timer_messages <= plot.stats.messages // 4, \
        plot.stats
    sent_by_timer = plot.stats.timer_messages
    plot.append("s", [n], [n])
    plot.push()
    stopped = time.perf_counter()
    assert _wait_for(lambda: plot.stats.points == n + 1, timeout=5)
    waited = time.perf_counter() - stopped
    assert plot.stats.timer_messages == sent_by_timer + 1
    assert waited <= interval * (1 + TIMER_LAG) + 0.05, waited
    plot.stop()


@pytest.mark.cluster
def test_two_ranks_stream_their_lines_and_the_job_mean(dp_records):
    r0, r1 = dp_records(2, 12)
    dash = Dashboard(total_steps=12)
    for a, b in zip(r0, r1):
        dash([b, a])
    dash.finish()
    data = dash.plot._data
    assert data["loss:0"][1] == [compact(r.loss) for r in r0]
    assert data["loss:1"][1] == [compact(r.loss) for r in r1]
    np.testing.assert_allclose(data["loss"][1], [(a.loss + b.loss) / 2 for a, b in zip(r0, r1)],
                               rtol=1e-4)
    np.testing.assert_allclose(data["thr"][1], smooth([a.samples_per_s + b.samples_per_s
                                                       for a, b in zip(r0, r1)]), rtol=1e-4)
    colours = {s["id"]: s["color"] for s in dash.plot.series}
    assert colours["loss:1"] == colours["thr:1"] == rank_color(1) != colours["loss:0"]
    rows = dash.plot._bars["split"]["rows"]
    assert [r["label"] for r in rows] == ["all", "rank 0", "rank 1"]
    assert rows[2]["color"] == rank_color(1)
    comm_ms = 1e3 * np.mean([r.t_comm for r in r1[-20:]])
    assert rows[2]["segments"][1][0] == pytest.approx(comm_ms, rel=1e-4)


def test_tokens_per_second_in_the_status_line(train_records):
    recs = train_records(5)
    for r in recs:
        r.extra["tokens"] = 32 * 16
    dash = Dashboard(total_steps=10)
    dash(recs)
    dash.flush()
    want = 32 * 16 / recs[-1].t_step
    assert "tokens/s" in dash.status.value and "samples/s" in dash.status.value
    assert _fmt_rate(want) + " tokens/s" in dash.status.value
    assert "step 5/10" in dash.status.value


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
    assert dash.stop_button.description == "stopped" and "■ stopped" in dash.status.value


def test_liveplot_sends_deltas_at_most_every_interval():
    plot = LivePlot([{"id": "p"}], series=[{"id": "s", "panel": "p"}], interval=0.2)
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < 0.6:
        plot.append("s", [n], [n / 3])
        plot.push()
        n += 1
        time.sleep(0.0005)
    # every point once, in at most one message per interval (+ the first one)
    assert _wait_for(lambda: plot.stats.points == n, timeout=5)
    elapsed = time.perf_counter() - t0
    assert plot.stats.messages <= elapsed / 0.2 + 1, (plot.stats.messages, n, elapsed)
    assert plot._data["s"] == (list(range(n)), [compact(i / 3) for i in range(n)])
    plot.stop()
    with pytest.raises(ValueError, match="interval must be >= 0 seconds, got -1"):
        LivePlot([], interval=-1)


def test_compact_rounds_and_keeps_json_valid():
    assert compact(0.123456789) == 0.12346 and compact(123456.7) == 123460.0
    assert compact(float("nan")) is None and compact(float("inf")) is None
    assert compact(None) is None


def test_headless_bundle_and_snapshot_are_pictures(train_records):
    dash = Dashboard(total_steps=10)
    dash(train_records(10))
    dash.finish()
    bundle = dash._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["image/png"] and bundle["text/html"].startswith("<img")
    png = dash.snapshot().data
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_smooth_is_a_running_mean():
    y = np.array([4.0, 2.0, 6.0, 8.0, 1.0])
    np.testing.assert_allclose(smooth(y, 3), [np.mean(y[max(0, i - 2):i + 1]) for i in range(5)])


def test_static_only_mode_shows_just_a_picture(monkeypatch, train_records):
    monkeypatch.setenv("HPCLAB_WIDGETS", "static")
    dash = Dashboard(total_steps=5)
    dash(train_records(5))
    dash.finish()
    bundle = dash._repr_mimebundle_()
    assert set(bundle) == {"image/png", "text/html"}

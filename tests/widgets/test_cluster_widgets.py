"""Widgets on real ipyparallel engines: the dashboard following a data-parallel Job, and
the cluster panel (status of live and killed engines, restart)."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch

import hpclab
from hpclab.parallel import Trainer, TrainerConfig
from hpclab.widgets import ClusterPanel, Dashboard
from hpclab.widgets.liveplot import compact

pytestmark = [pytest.mark.unit_d, pytest.mark.cluster]


def model_fn():
    return hpclab.problems.make_mlp(64, (32,), 10, seed=0)


def data_fn():
    split = hpclab.problems.load_digits_split()
    return split.X_train, split.y_train


def optimizer_fn(params):
    return torch.optim.SGD(params, lr=0.1)


@pytest.fixture(scope="module")
def cluster():
    with hpclab.connect(n=2, timeout=90) as c:
        yield c


def test_dashboard_follows_a_two_engine_job(cluster):
    job = Trainer(cluster, model_fn, data_fn, optimizer_fn,
                  TrainerConfig(batch_size=32)).fit(steps=30)
    dash = Dashboard.for_job(job)     # records arrive on the Job's receiving thread
    history = job.wait(timeout=120)
    deadline = time.monotonic() + 20
    while dash.points.value < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dash.points.value == 60 and dash.state.world_size == 2
    by_rank = {r: sorted((x.step, x.loss) for x in history if x.rank == r) for r in (0, 1)}
    for r in (0, 1):
        s = dash.state.ranks[r]
        assert sorted(zip(s.steps, s.loss)) == by_rank[r]
        # every point reached the plot's stream, sent by the timer thread without finish()
        assert _wait_for_points(dash, f"loss:{r}", 30)
        sent = sorted(zip(*dash.plot._data[f"loss:{r}"]))
        assert sent == [(k, compact(v)) for k, v in by_rank[r]]
    assert dash.finished and "✔ done" in dash.status.value
    dash.finish()


def _wait_for_points(dash, series, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while len(dash.plot._data.get(series, ((), ()))[0]) < n:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_stop_button_stops_the_job(cluster):
    job = Trainer(cluster, model_fn, data_fn, optimizer_fn,
                  TrainerConfig(batch_size=32, stop_check_every=5)).fit(steps=100_000)
    dash = Dashboard.for_job(job)
    deadline = time.monotonic() + 60
    while dash.state.n_records < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    dash.stop_button.click()
    history = job.wait(timeout=60)
    assert job.stopped and len(history) < 2 * 100_000
    dash.finish()
    assert dash.stop_button.description == "stopped"


def test_cluster_panel_sees_a_dead_engine_and_restarts(cluster):
    panel = ClusterPanel(cluster)
    assert panel.statuses() == ["idle", "idle"]
    assert [r["host"] for r in panel.rows] == cluster.hosts
    assert "idle" in panel.table.value and "memory (GB)" in panel.table.value
    old = list(cluster.pids)
    os.kill(old[1], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while "dead" not in panel.statuses() and time.monotonic() < deadline:
        time.sleep(0.5)
        panel.refresh()
    assert panel.statuses()[1] == "dead", panel.rows
    panel.restart(wait=True)
    assert panel.statuses() == ["idle", "idle"], panel.message.value
    assert set(cluster.pids).isdisjoint(old)
    assert cluster.run(lambda ctx: ctx.rank) == [0, 1]

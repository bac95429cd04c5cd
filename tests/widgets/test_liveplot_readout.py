"""Readouts of the live plot (the latest value of a key, shown above the canvas) and the
dashboard's MFU readout, fed with records from real training with model FLOPs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hpclab
from hpclab.flops import peak_flops, training_flops
from hpclab.problems import digits_loaders, make_mlp
from hpclab.widgets import Dashboard
from hpclab.widgets.dashboard_plot import SMOOTH
from hpclab.widgets.liveplot import LivePlot, compact

pytestmark = [pytest.mark.unit_d]


def _capture(plot) -> list:
    sent = []
    plot.send = lambda msg, buffers=None: sent.append(msg)
    return sent


def test_set_value_travels_in_the_next_message_and_in_a_reset():
    plot = LivePlot([{"id": "a", "title": "a"}], readouts=[{"key": "mfu", "label": "MFU",
                                                            "format": "percent"}])
    sent = _capture(plot)
    plot.set_value("mfu", 0.0312345)
    assert plot.flush() and sent[-1]["values"] == {"mfu": compact(0.0312345)}
    assert not plot.flush()                      # nothing new: no message
    plot._on_msg(plot, {"kind": "hello"}, [])    # a page reload
    assert sent[-1]["kind"] == "reset" and sent[-1]["values"] == {"mfu": compact(0.0312345)}
    plot.close()


def test_dashboard_shows_the_mfu_of_the_records():
    train, _ = digits_loaders(batch_size=32)
    model = make_mlp(64, (32,), 10, seed=0)
    x = next(iter(train))[0]
    peak, _ = peak_flops("cpu", budget_s=0.05)
    dash = Dashboard(total_steps=15)
    sent = _capture(dash.plot)
    history = hpclab.train.fit(model, hpclab.optim.SGD(model.parameters(), lr=0.1), train,
                               torch.nn.functional.cross_entropy, steps=15, callbacks=[dash],
                               progress=False, flops_per_sample=training_flops(model, x),
                               peak_flops=peak)
    dash.finish()
    assert dash.plot.readouts == [{"key": "mfu", "label": "MFU", "format": "percent"}]
    want = np.mean([r.mfu for r in history.records][-SMOOTH:])
    assert dash.plot._values["mfu"] == compact(want)
    assert any("values" in m for m in sent)


def test_no_mfu_no_readout(train_records):
    dash = Dashboard(total_steps=5)
    dash(train_records(5))
    dash.finish()
    assert dash.plot.readouts == [] and dash.plot._values == {}

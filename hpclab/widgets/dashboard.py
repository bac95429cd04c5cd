"""The live training dashboard: loss, throughput and time split while a job trains.

Single process (a callback of `hpclab.train.fit`):

    dash = Dashboard(total_steps=200)
    display(dash)
    history = hpclab.train.fit(..., callbacks=[dash])

Data parallel on engines (`hpclab.parallel.Trainer(...).fit(...)` returns a Job at once):

    job = trainer.fit(...)
    dash = Dashboard.for_job(job)          # subscribes; Stop calls job.stop()
    display(dash)
    ...                                    # the kernel is free: run other cells
    job.wait(); dash.finish(); dash.snapshot()

Calling the dashboard with a record only appends it (microseconds). The numbers
(progress, points, status line with ETA) refresh every `max_latency` seconds on a
background thread; the plot is redrawn by a `Renderer` (renderer.py) as often as
`max_latency` asks and `budget` allows (1.5 % of the wall time for a fit callback, which
draws on the training thread when a draw is due; 10 % for a Job, whose records are drawn
on the renderer thread of the notebook process while the engines train). `dash.latencies` holds
arrival-to-plot times; `dash.snapshot()` returns a static PNG of the current state (for
exported HTML, nbval and CI logs).
"""

from __future__ import annotations

import threading
import time

import ipywidgets as W

from hpclab.metrics import StepRecord
from hpclab.widgets.dashboard_plot import DashboardPlot
from hpclab.widgets.dashboard_state import DashboardState
from hpclab.widgets.figure import DRAW_LOCK, StaticFallback, figure_png, live_figure
from hpclab.widgets.renderer import Renderer

# Share of wall time the plot may take (renderer.py). A fit callback draws on the training
# thread: 1.5 %, so that with the first draws and the status line it stays < 3 %. A Job
# trains in the engines and the notebook process draws: 10 % of it buys the 0.5 s latency
# (measured: engines 2.5 % slower, within the run-to-run noise, on 2 shared cores).
FIT_BUDGET, JOB_BUDGET = 0.015, 0.10


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = round(s)
    return f"{s // 60}:{s % 60:02d}" if s >= 60 else f"{s} s"


class Dashboard(StaticFallback, W.VBox):
    def __init__(self, total_steps: int | None = None, title: str = "training",
                 max_latency: float = 0.5, budget: float | None = None,
                 max_interval: float = 5.0,
                 window: int = 20):
        self.state = DashboardState(total_steps=total_steps, window=window)
        self.fig, self.canvas = live_figure(figsize=(11, 3.0), layout=None)
        self.plot = DashboardPlot(self.fig)
        with DRAW_LOCK:   # a figure's first draw costs several later ones (fonts, text
            self.plot.render(self.canvas)   # layout): pay it here, not during training
        self.title = title
        self.status = W.HTML(f"<b>{title}</b>: waiting for the first step")
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0, description="progress",
                                        layout=W.Layout(width="320px"))
        self.points = W.IntText(value=0, description="points", disabled=True,
                                layout=W.Layout(width="160px"))
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop")
        self.stop_button.on_click(lambda _: self.stop())
        self.stop_requested = False
        self.finished = False
        self.full_redraws = 0
        self.latencies: list[float] = []      # seconds from arrival to the plot showing it
        self._job = None
        self._pending: list = []
        self._undrawn_since: float | None = None   # arrival of the oldest record not plotted
        self._plotted = 0
        self._lock = threading.Lock()              # guards _pending (any thread appends)
        self._state_lock = threading.RLock()       # guards state (two drawing threads)
        # the plot: as often as max_latency asks and budget allows (see renderer.py);
        # the numbers (progress, points, status): every max_latency, they cost ~1 ms
        self._budget_given = budget is not None
        self.renderer = Renderer(self._draw_plot, max_latency=max_latency,
                                 budget=FIT_BUDGET if budget is None else budget,
                                 max_interval=max_interval)
        self.numbers = Renderer(self._update_numbers, max_latency=max_latency, budget=1.0)
        super().__init__([
            W.HBox([self.status]),
            W.HBox([self.progress, self.points, self.stop_button]),
            self.canvas,
        ])
        self.renderer.start()
        self.numbers.start()

    # -- feeding ----------------------------------------------------------------------
    def __call__(self, record: StepRecord | list) -> None:
        """Callback for fit() and Job.subscribe(): queue the record(s) for drawing."""
        with self._lock:
            if self._undrawn_since is None:
                self._undrawn_since = time.perf_counter()
            if isinstance(record, (list, tuple)):
                self._pending.extend(record)
            else:
                self._pending.append(record)
        self.numbers.poke()
        self.renderer.poke()
        if self._job is None:      # called on the training thread: draw here when due
            self.renderer.tick()
        if self.stop_requested and self._job is None:
            from hpclab.train import StopTraining  # fit() ends cleanly after this step
            raise StopTraining("stopped from the dashboard")

    on_step = __call__

    @classmethod
    def for_job(cls, job, total_steps: int | None = None, **kwargs) -> Dashboard:
        dash = cls(total_steps=total_steps or getattr(job, "steps", None), **kwargs)
        dash.attach(job)
        return dash

    def attach(self, job) -> Dashboard:
        """Follow a distributed Job: subscribe to its records; Stop calls job.stop()."""
        self._job = job
        if not self._budget_given:       # drawing no longer shares the training's thread
            self.renderer.budget = JOB_BUDGET
        job.subscribe(self)
        return self

    def stop(self) -> None:
        self.stop_requested = True
        self.stop_button.disabled = True
        self.stop_button.description = "stopping"
        if self._job is not None:
            self._job.stop()

    # -- drawing (renderer threads, or the training thread via tick) -------------------
    def _fold(self) -> None:
        with self._lock:
            new, self._pending = self._pending, []
        self.state.add(new)

    def _draw_plot(self) -> None:
        with self._state_lock:
            self._fold()
            if self._plotted and self._plotted == self.state.n_records:
                return
            with self._lock:
                since, self._undrawn_since = self._undrawn_since, None
            self._plotted = self.state.n_records
            self.plot.update(self.state)
        with DRAW_LOCK:
            self.full_redraws += self.plot.render(self.canvas)
        if since is not None:
            self.latencies.append(time.perf_counter() - since)

    def _update_numbers(self) -> None:
        with self._state_lock:
            self._fold()
            st = self.state
            loss, thr = st.latest()
            parts = [f"<b>{self.title}</b>: step {st.steps_done}/{st.total_steps or '?'}",
                     f"{len(st.ranks)} rank(s)"]
            if loss is not None:
                parts += [f"loss {loss:.4g}", f"{thr:,.0f} samples/s"]
            parts.append(f"ETA {_fmt_seconds(st.eta())}")
            stats = self.renderer.stats
            parts.append(f"plot: {1e3 * stats.mean_draw:.0f} ms per draw, "
                         f"{100 * stats.duty_cycle:.1f}% of wall time")
            self.progress.value = st.progress
            self.points.value = st.n_points
            self.status.value = " · ".join(parts)
            done = bool(st.total_steps) and st.steps_done >= st.total_steps
        if done and not self.finished:
            self.finished = True
            self.stop_button.disabled = True
            self.stop_button.description = "done"

    def flush(self) -> None:
        """Draw everything received so far, now (from the calling thread)."""
        self.renderer.draw_now()
        self.numbers.draw_now()

    def finish(self) -> None:
        """Training is over: last draw, stop the threads, retire the Stop button."""
        self.renderer.stop()
        self.numbers.stop()
        self.flush()
        self.finished = True
        self.stop_button.disabled = True
        self.stop_button.description = "stopped" if self.stop_requested else "done"

    # -- static output ----------------------------------------------------------------
    def figure(self):
        """A fresh static matplotlib Figure of the current state (for savefig)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(11, 3.0), dpi=80)
        with self._state_lock, DRAW_LOCK:
            self._fold()
            DashboardPlot(fig, live=False).update(self.state)
        return fig

    def snapshot(self):
        """An inline PNG of the current state: shows in exported HTML and CI logs."""
        from IPython.display import Image

        return Image(data=figure_png(self.figure()))

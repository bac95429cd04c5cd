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

The browser draws the plot (liveplot.py / liveplot.js). A call with a record only queues
it (a deque append and a clock comparison, on a plain object: `dash.on_step`, what `fit`
calls). Every `interval` seconds (0.1) the queued records become state and points in one
batch (each rank's loss and samples/s, and once every rank has reported a step, the
job's mean loss and total samples/s), sent to the browser as one message from the
calling thread; the plot's timer thread sends what is left when no record comes.
Records that carry the model FLOPs utilisation (extra["mfu"], hpclab.flops) add a
readout above the plot: "MFU x %", the mean over ranks of each rank's last SMOOTH steps.
The numbers (progress, points, status line with samples/s, tokens/s and ETA) follow
every 0.5 s. Colours: one per rank, the same in the three panels; black for the whole
job. `dash.snapshot()` returns a static PNG of the same picture (matplotlib,
dashboard_plot.py) for exported HTML, slides and CI; a notebook executed headless shows
that picture too.
"""

from __future__ import annotations

import html
import threading
import time
from collections import deque

import ipywidgets as W

from hpclab.metrics import StepRecord
from hpclab.widgets.dashboard_plot import (
    SMOOTH,
    SPLIT_COLORS,
    SPLIT_NAMES,
    VAL_COLOR,
    draw_dashboard,
    rank_color,
)
from hpclab.widgets.dashboard_state import DashboardState
from hpclab.widgets.figure import DRAW_LOCK, StaticFallback, figure_png
from hpclab.widgets.liveplot import LivePlot

NUMBERS_EVERY = 0.5       # s between updates of the status line, progress and points
DONE_STYLE = "background:#e3f4e1;border:1px solid #55a868;border-radius:4px;padding:2px 8px"
STOPPED_STYLE = "background:#fbeaea;border:1px solid #d62728;border-radius:4px;padding:2px 8px"


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = round(s)
    return f"{s // 60}:{s % 60:02d}" if s >= 60 else f"{s} s"


def _fmt_rate(x: float) -> str:
    """12 345 -> '12.3k', 1 234 567 -> '1.23M': three significant digits."""
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def _point(points: dict, sid: str, x, y) -> None:
    xs, ys = points.setdefault(sid, ([], []))
    xs.append(x)
    ys.append(y)


def _panels(total_steps: int | None) -> list[dict]:
    xlim = [0, total_steps * 1.02] if total_steps else None
    return [
        {"id": "loss", "title": "loss", "xlabel": "step", "xlim": xlim},
        {"id": "thr", "title": f"samples/s (mean of {SMOOTH} steps)", "xlabel": "step",
         "xlim": xlim},
        {"id": "split", "kind": "bars", "title": "time per step (ms)", "weight": 0.8,
         "pad_left": 64, "pad_bottom": 62},
    ]


class StepFeed:
    """`dash.on_step`: what the training loop calls every step. It queues the record and
    compares a clock; when a message is due it has the dashboard send it. A plain
    object with slots: it runs between two steps on caches torch has just filled, and
    each attribute of a widget is looked up through a dozen classes (4.9 µs a call
    through the widget, 2.6 µs through this, measured in `fit`)."""

    __slots__ = ("clock", "dash", "inbox", "seconds", "stop")

    def __init__(self, dash: Dashboard):
        self.inbox: deque = deque()     # records not yet turned into points
        self.clock = dash.plot.clock
        self.dash = dash
        self.seconds = 0.0              # wall seconds inside the calls
        self.stop = False               # Stop was pressed and fit should end

    def __call__(self, record: StepRecord | list) -> None:
        t0 = time.perf_counter()
        if type(record) is list or type(record) is tuple:
            self.inbox.extend(record)
        else:
            self.inbox.append(record)
        if t0 >= self.clock.due_at:             # a message is due: it goes from here
            self.dash._send_due(t0)
        elif not self.clock.armed:              # else the timer backstops, once per message
            self.dash.plot.arm()
        self.seconds += time.perf_counter() - t0
        if self.stop:
            from hpclab.train import StopTraining  # fit() ends cleanly after this step
            raise StopTraining("stopped from the dashboard")


class Dashboard(StaticFallback, W.VBox):
    def __init__(self, total_steps: int | None = None, title: str = "training",
                 interval: float = 0.1, window: int = 20):
        self._state = DashboardState(total_steps=total_steps, window=window)
        self.title = title
        self.plot = LivePlot(_panels(total_steps), interval=interval, height=320, series=[
            {"id": "loss", "panel": "loss", "color": "black", "width": 2.5, "label": "loss"},
            {"id": "val", "panel": "loss", "color": VAL_COLOR, "mode": "points", "size": 3.5,
             "label": "validation"},
            {"id": "thr", "panel": "thr", "color": "black", "width": 2.5, "label": "samples/s"},
        ])
        self.on_step = StepFeed(self)               # what a training loop calls
        self.plot.before_flush = self._before_flush
        self.plot.on_timer = self._numbers_soon
        self.status = W.HTML(f"<b>{html.escape(title)}</b>: waiting for the first step",
                             style={"font_size": "15px"})
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0, description="progress",
                                        layout=W.Layout(width="320px"))
        self.points = W.IntText(value=0, description="points", disabled=True,
                                layout=W.Layout(width="160px"))
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop")
        self.stop_button.on_click(lambda _: self.stop())
        self.stop_requested = False
        self.finished = False
        self._job = None
        self._multi = False
        self._agg: dict[int, list] = {}             # step -> [ranks, Σloss, Σthr, t_end, vals]
        self._windows: dict[object, deque] = {}     # series -> last SMOOTH samples/s
        self._rank_lines: set[int] = set()          # ranks whose two lines exist
        self._tokens: dict[int, float] = {}         # rank -> last tokens/s
        self._mfu: dict[int, float] = {}            # rank -> MFU, mean of SMOOTH steps
        self._t_first: float | None = None
        self._numbers_at = 0.0
        self._numbers_later: threading.Timer | None = None
        self._numbers_cpu = 0.0                     # CPU seconds of delayed number updates
        self._lock = threading.Lock()               # state and streams: any thread feeds
        super().__init__([
            W.HBox([self.status]),
            W.HBox([self.progress, self.points, self.stop_button]),
            self.plot,
        ])

    # -- feeding ----------------------------------------------------------------------
    def __call__(self, record: StepRecord | list) -> None:
        """Callback for fit() and Job.subscribe(): queue the records (any thread); they
        become points when the next message is due."""
        self.on_step(record)

    def _send_due(self, now: float) -> None:
        """A call found a message due: send it (and the numbers, when they are due)."""
        self.plot.flush()
        if now - self._numbers_at >= NUMBERS_EVERY:
            self._update_numbers()

    @property
    def state(self) -> DashboardState:
        """What the dashboard shows, with every record received so far."""
        self._drain()
        return self._state

    def _drain(self) -> None:
        """Queued records -> state and points, in one batch under the lock."""
        with self._lock:
            inbox, points, stamps = self.on_step.inbox, {}, []
            if not inbox:
                return
            batch = []
            while inbox:                 # popleft: producers may append meanwhile
                r = inbox.popleft()
                batch.append(StepRecord.from_dict(r) if type(r) is dict else r)
            self._state.add(batch)
            if self._t_first is None:
                self._t_first = batch[0].time - batch[0].t_step
            for rec in batch:
                if rec.extra:
                    self._note_extras(rec)
            if self._state.world_size == 1:
                self._add_steps(batch, points, stamps)
            else:
                for rec in batch:
                    self._add(rec, points, stamps)
            if self._mfu:
                if not self.plot.readouts:
                    self.plot.readouts = [{"key": "mfu", "label": "MFU", "format": "percent"}]
                self.plot.set_value("mfu", sum(self._mfu.values()) / len(self._mfu))
            for sid, (xs, ys) in points.items():
                self.plot.append(sid, xs, ys)
            if stamps:
                self.plot.stamp(stamps)

    def _before_flush(self) -> None:
        self._drain()
        self._set_bars()

    def _smoothed(self, key, value: float) -> float:
        w = self._windows.setdefault(key, deque(maxlen=SMOOTH))
        w.append(value)
        return sum(w) / len(w)

    def _note_extras(self, rec: StepRecord) -> None:
        """tokens/s and MFU of the record's rank, from what it carries in extra."""
        if "tokens" in rec.extra and rec.t_step > 0:
            self._tokens[rec.rank] = rec.extra["tokens"] / rec.t_step
        if rec.extra.get("mfu") is not None:
            self._mfu[rec.rank] = self._smoothed(("mfu", rec.rank), rec.extra["mfu"])

    def _add_steps(self, batch: list[StepRecord], points: dict, stamps: list) -> None:
        """One process: each record is a step of the job, its loss and samples/s, and
        its end time (into `stamps`)."""
        steps = [r.step for r in batch]
        points["loss"] = (steps, [r.loss for r in batch])
        points["thr"] = (steps, [self._smoothed("job", r.samples_per_s) for r in batch])
        val = [(r.step, float(r.extra["val_loss"])) for r in batch
               if r.extra and r.extra.get("val_loss") is not None]
        if val:
            points["val"] = tuple(zip(*val))
        stamps.extend([r.time for r in batch])

    def _add(self, rec: StepRecord, points: dict, stamps: list) -> None:
        """One record of a job of several ranks: its rank's points into `points`
        {series: (xs, ys)}, and once every rank has finished the step, the job's point and
        the step's end time (into `stamps`)."""
        if not self._multi:
            self._go_multi()
        r, k, world = rec.rank, rec.step, max(rec.world_size, 1)
        thr = rec.samples_per_s
        val = rec.extra.get("val_loss") if rec.extra else None
        self._rank_series(r)
        _point(points, f"loss:{r}", k, rec.loss)
        _point(points, f"thr:{r}", k, self._smoothed(r, thr))
        agg = self._agg.setdefault(k, [0, 0.0, 0.0, 0.0, []])
        agg[0] += 1
        agg[1] += float(rec.loss)
        agg[2] += thr
        agg[3] = max(agg[3], rec.time)
        if val is not None:
            agg[4].append(float(val))
        if agg[0] >= world:                        # every rank has finished step k
            del self._agg[k]
            _point(points, "loss", k, agg[1] / agg[0])
            _point(points, "thr", k, self._smoothed("job", agg[2]))
            if agg[4]:
                _point(points, "val", k, sum(agg[4]) / len(agg[4]))
            stamps.append(agg[3])

    def _go_multi(self) -> None:
        self._multi = True
        series = [dict(s) for s in self.plot.series]
        for s in series:
            if s["id"] == "loss":
                s["label"] = "mean"
            if s["id"] == "thr":
                s["label"] = "job"
        self.plot.series = series

    def _rank_series(self, r: int) -> None:
        if r in self._rank_lines:
            return
        self._rank_lines.add(r)
        c = rank_color(r)
        self.plot.add_series(id=f"loss:{r}", panel="loss", color=c, width=1.5, alpha=0.85,
                             label=f"rank {r}")
        self.plot.add_series(id=f"thr:{r}", panel="thr", color=c, width=1.5, alpha=0.85,
                             label=f"rank {r}")
        # legends list the ranks in order, whichever reported first
        self.plot.series = sorted(self.plot.series,
                                  key=lambda s: int(s["id"].split(":")[1]) if ":" in s["id"] else -1)

    def _set_bars(self) -> None:
        """The time split, mean of the last `window` steps (O(ranks·window))."""
        with self._lock:
            st = self._state
            if not st.ranks:
                return
            rows = [("all", st.time_split(), "#222222")]
            if self._multi:
                rows += [(f"rank {r}", st.time_split(r), rank_color(r)) for r in sorted(st.ranks)]
        self.plot.set_bars("split", [
            {"label": name, "color": color,
             "segments": [[1e3 * v, c] for v, c in zip(split, SPLIT_COLORS)]}
            for name, split, color in rows], legend=list(zip(SPLIT_NAMES, SPLIT_COLORS)))

    # -- numbers ------------------------------------------------------------------------
    def _numbers_soon(self) -> None:
        """After the plot's timer sent points: the numbers now if they are due, else once
        when they are (not after every message: three widget updates each)."""
        wait = NUMBERS_EVERY - (time.perf_counter() - self._numbers_at)
        if wait <= 0:
            self._update_numbers()
        elif self._numbers_later is None or not self._numbers_later.is_alive():
            self._numbers_later = threading.Timer(wait, self._numbers_later_timed)
            self._numbers_later.daemon = True
            self._numbers_later.start()

    def _numbers_later_timed(self) -> None:
        cpu0 = time.thread_time()
        self._update_numbers()
        self._numbers_cpu += time.thread_time() - cpu0

    def _update_numbers(self) -> None:
        self._drain()
        with self._lock:
            st = self._state
            loss, thr = st.latest()
            done = bool(st.total_steps) and st.steps_done >= st.total_steps
            rates = ""
            if loss is not None:
                rates = f"loss {loss:.4g} · {_fmt_rate(thr)} samples/s"
                if self._tokens:
                    rates += f" · {_fmt_rate(sum(self._tokens.values()))} tokens/s"
            ranks = f"{len(st.ranks)} rank{'s' if len(st.ranks) != 1 else ''}"
            name = f"<b>{html.escape(self.title)}</b>"
            if done or (self.finished and st.ranks):
                last = max((s.records[-1].time for s in st.ranks.values() if s.records),
                           default=None)
                took = last - self._t_first if last and self._t_first else None
                word, style = (("■ stopped", STOPPED_STYLE) if self.stop_requested else
                               ("✔ done", DONE_STYLE))
                status = (f"<span style='{style}'>{word}</span> {name}: "
                          f"{st.steps_done} steps in {_fmt_seconds(took)} · {ranks} · {rates}")
            elif loss is None:
                status = f"{name}: waiting for the first step"
            else:
                status = (f"{name}: step {st.steps_done}/{st.total_steps or '?'} · {ranks} · "
                          f"{rates} · ETA {_fmt_seconds(st.eta())}")
            progress, points = st.progress, st.n_points
        self._numbers_at = time.perf_counter()
        self.progress.value = progress
        self.points.value = points
        self.status.value = status
        if done and not self.finished:
            self._mark_finished()

    def _mark_finished(self) -> None:
        self.finished = True
        self.progress.bar_style = "danger" if self.stop_requested else "success"
        self.stop_button.disabled = True
        self.stop_button.description = "stopped" if self.stop_requested else "done"
        self.stop_button.icon = "stop" if self.stop_requested else "check"
        self.stop_button.button_style = "" if self.stop_requested else "success"

    # -- control ------------------------------------------------------------------------
    @classmethod
    def for_job(cls, job, total_steps: int | None = None, **kwargs) -> Dashboard:
        dash = cls(total_steps=total_steps or getattr(job, "steps", None), **kwargs)
        dash.attach(job)
        return dash

    def attach(self, job) -> Dashboard:
        """Follow a distributed Job: subscribe to its records; Stop calls job.stop()."""
        self._job = job
        # records come from the thread that receives them, not from the training loop:
        # the timer may send at the due time without delaying any training step
        self.plot.timer_lag = 0.0
        job.subscribe(self)
        return self

    def stop(self) -> None:
        self.stop_requested = True
        self.on_step.stop = self._job is None       # fit ends after its current step
        self.stop_button.disabled = True
        self.stop_button.description = "stopping"
        if self._job is not None:
            self._job.stop()

    def flush(self) -> None:
        """Send everything received so far to the browser, now."""
        self.plot.flush()
        self._update_numbers()

    def finish(self) -> None:
        """Training is over: last points and numbers, the timer thread ends, Stop retires."""
        self.plot.stop()
        self.finished = True
        self._update_numbers()
        self._mark_finished()

    @property
    def seconds_taken(self) -> float:
        """Seconds the dashboard has taken from the process it runs in while training:
        the time inside its calls (queueing, and each message sent from the caller's
        thread: the caller waits for them, computing or waiting for a lock), plus the CPU
        time of its own threads (the plot's timer, the delayed number updates). The calls
        are timed by the wall clock, a few ns to read: a thread CPU clock is a system call
        that costs a thread coming back from torch 3 µs, more than queueing a record
        costs. Training loses this much, and more only through its caches and the GIL's
        hand-offs (the A/B step time of `hpclab bench dashboard` sees those)."""
        return self.on_step.seconds + self._numbers_cpu + self.plot.stats.timer_cpu

    @property
    def latencies(self) -> list[float]:
        """Seconds from each step's end (all ranks) to the message carrying its point."""
        return self.plot.stats.latencies

    # -- static output ----------------------------------------------------------------
    def figure(self):
        """A fresh static matplotlib Figure of the current state (for savefig)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(13, 4), dpi=100)
        self._drain()
        with self._lock, DRAW_LOCK:
            draw_dashboard(fig, self._state)
        return fig

    def snapshot(self):
        """An inline PNG of the current state: shows in exported HTML and CI logs."""
        from IPython.display import Image

        return Image(data=figure_png(self.figure()))

"""A plot drawn by the browser: the kernel streams each new point, a canvas draws it.

    plot = LivePlot(panels=[{"id": "loss", "title": "loss", "xlabel": "step"}],
                    series=[{"id": "mean", "panel": "loss", "color": "black"}])
    display(plot)
    plot.append("mean", [step], [loss])      # any thread: buffered (microseconds)
    plot.push()                              # send what is buffered, when due
    plot = LivePlot(panels, readouts=[{"key": "mfu", "label": "MFU", "format": "percent"}])
    plot.set_value("mfu", 0.031)             # the browser shows "MFU 3.10 %" above the plot

The JavaScript is `liveplot.js`, shipped in this package (nothing is fetched at run
time) and loaded by anywidget. Only deltas travel: every message carries the points that
arrived since the previous one, a few bytes each (floats rounded to 5 significant
digits). Sending is throttled by wall time: `push()` sends at once when `interval`
seconds have passed since the last message, so a burst of points becomes one message,
from the thread that pushes. A timer thread is the backstop: it sends what is left once
`interval · (1 + timer_lag)` has passed with no message, so the last points of a run are
not left behind. With `timer_lag=TIMER_LAG` (the default) it stays out of the way of a
caller that pushes more often than that (a training loop's callback): a second Python
thread sending at every due time takes the GIL from the training thread at each of its
torch calls, and in `fit` that cost the steps 6 % for 2 % of a core of its own work
(`hpclab bench dashboard`). A caller that is not the training loop (the thread that
receives a Job's records) sets `timer_lag = 0`: the timer then sends at the due time. The
browser draws at most once per animation frame, whatever arrived in between (frames are
dropped, never queued).

Messages (kernel → browser): {"kind": "append" | "replace" | "reset", "data": {series:
[xs, ys]}, "bars": {panel: bars}, "values": {key: latest number}, "t": {"t0": seconds,
"ms": [offsets]}}; a new view of the model (a page reload) sends {"kind": "hello"} and
gets a "reset" with everything so far. `t` holds the time.time() at which each step
ended, as t0 + offset/1000 (whole ms: a few digits a step rather than 14): the browser
measures from it to the frame that shows the point (`canvas.hpclab.latencies`), the
kernel to the moment it sent it (`plot.stats.latencies`).

Panels: {"id", "title", "xlabel", "kind": "xy" | "bars", "weight", "xlim", "ylim",
"ylog", "legend"}. Series: {"id", "panel", "color", "width", "alpha", "label",
"mode": "line" | "points" | "head", "cut" (show points 0..k only, k = `plot.k`),
"source" (draw another series' data)}. Readouts: {"key", "label", "format": "percent" |
"number"}: the latest value sent for `key` (set_value), written by the browser as text in
a row above the canvas (`.hpclab-liveplot-readout`, one span per readout, "—" before the
first value).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import anywidget
import traitlets as T

MAX_LATENCIES = 100_000
TIMER_LAG = 0.5       # the timer sends after interval·(1 + timer_lag) without a message


def compact(v) -> int | float | None:
    """A float rounded to 5 significant digits (JSON: ~7 bytes instead of ~18); an int
    as it is (a step number: exact, and short already); None for inf and NaN, which JSON
    cannot carry, and for None (a break in a line)."""
    if v is None:
        return None
    if type(v) is int:
        return v
    v = float(v)
    if not math.isfinite(v):
        return None
    return float(f"{v:.5g}")


class SendClock:
    """When the next message may go, and whether the timer is waiting to send: read by
    a training loop's callback every step, so a plain object with slots (reaching an
    attribute of the widget goes through a dozen classes, on caches torch has just
    filled)."""

    __slots__ = ("armed", "due_at")

    def __init__(self):
        self.due_at = 0.0       # perf_counter() from which the next message may go
        self.armed = False      # the timer is waiting to send: push() need not wake it


@dataclass
class StreamStats:
    messages: int = 0
    points: int = 0
    send_time: float = 0.0        # seconds spent building and sending messages
    timer_cpu: float = 0.0        # CPU seconds of the timer thread (its sends, on_timer)
    timer_messages: int = 0       # messages the timer thread sent
    latencies: list = field(default_factory=list)   # step end -> message sent, seconds


class LivePlot(anywidget.AnyWidget):
    _esm = Path(__file__).with_name("liveplot.js")
    panels = T.List(T.Dict()).tag(sync=True)
    series = T.List(T.Dict()).tag(sync=True)
    k = T.Int(-1).tag(sync=True)          # series with "cut" show points 0..k (-1: all)
    height = T.Int(300).tag(sync=True)
    max_width = T.Int(1360).tag(sync=True)
    uid = T.Unicode().tag(sync=True)      # names the browser's data store of this plot
    readouts = T.List(T.Dict()).tag(sync=True)

    def __init__(self, panels, series=(), height: int = 300, interval: float = 0.1, **kwargs):
        if interval < 0:
            raise ValueError(f"interval must be >= 0 seconds, got {interval}")
        super().__init__(panels=list(panels), series=list(series), height=height,
                         uid=uuid.uuid4().hex, **kwargs)
        self.interval = interval
        self.timer_lag = TIMER_LAG
        self.stats = StreamStats()
        self._data: dict[str, tuple[list, list]] = {}     # everything sent, for a reset
        self._bars: dict[str, dict] = {}
        self._values: dict[str, float | None] = {}
        self._pending: dict[str, tuple[list, list]] = {}
        self._pending_bars: dict[str, dict] = {}
        self._pending_values: dict[str, float | None] = {}
        self._pending_t: list[float] = []
        self._buffer_lock = threading.Lock()    # producers append, the sender takes
        self._send_lock = threading.Lock()      # one message at a time, in order
        self._last_send = 0.0
        self.clock = SendClock()
        self._wake = threading.Event()
        self._closed = False
        self._timer: threading.Thread | None = None
        self.before_flush = None    # called before each send (a last chance to buffer)
        self.on_timer = None        # called after each send of the timer thread
        self.on_msg(self._on_msg)

    # -- series -----------------------------------------------------------------------
    def add_series(self, **spec) -> None:
        """Declare a series (once; later calls with the same id are ignored)."""
        if all(s["id"] != spec["id"] for s in self.series):
            self.series = [*self.series, spec]

    def append(self, sid: str, xs, ys) -> None:
        with self._buffer_lock:
            bx, by = self._pending.setdefault(sid, ([], []))
            bx.extend(compact(x) for x in xs)
            by.extend(compact(y) for y in ys)

    def stamp(self, times) -> None:
        """Times (time.time()) at which the steps now buffered ended, for latencies."""
        with self._buffer_lock:
            self._pending_t.extend(times)

    def set_bars(self, panel: str, rows, legend=()) -> None:
        """rows: [{"label", "color", "segments": [[value, color], ...]}] (replaces)."""
        rows = [dict(r, segments=[[compact(v), c] for v, c in r["segments"]]) for r in rows]
        with self._buffer_lock:
            self._pending_bars[panel] = {"rows": rows, "legend": [list(x) for x in legend]}

    def set_value(self, key: str, value) -> None:
        """The latest value of a readout (sent with the next message; replaces)."""
        with self._buffer_lock:
            self._pending_values[key] = compact(value)

    def value(self, key: str) -> float | None:
        """The latest value of `key` sent to the browser (None before the first)."""
        with self._send_lock:
            return self._values.get(key)

    def replace(self, data: dict) -> None:
        """Set whole series at once, {id: (xs, ys)}, and send now (the playground)."""
        data = {sid: ([compact(x) for x in xs], [compact(y) for y in ys])
                for sid, (xs, ys) in data.items()}
        with self._send_lock:
            self._data.update(data)
            self._post({"kind": "replace", "data": data})

    # -- sending ----------------------------------------------------------------------
    def due(self) -> bool:
        return time.perf_counter() >= self.clock.due_at

    def push(self) -> None:
        """Send the buffer if `interval` has passed since the last message, else make
        sure the timer sends it then. Cheap when not due: call it after every append."""
        if self.due():
            self.flush()
        else:
            self.arm()

    def flush(self) -> bool:
        """Send everything buffered now, as one message; False if there was nothing."""
        # disarm first: whatever is pushed from here on arms the timer again
        self.clock.armed = False
        self._wake.clear()
        if self.before_flush is not None:
            self.before_flush()
        with self._send_lock:
            with self._buffer_lock:
                data, self._pending = self._pending, {}
                bars, self._pending_bars = self._pending_bars, {}
                values, self._pending_values = self._pending_values, {}
                times, self._pending_t = self._pending_t, []
            if not (data or bars or values):
                return False
            t0 = time.perf_counter()
            for sid, (xs, ys) in data.items():
                kx, ky = self._data.setdefault(sid, ([], []))
                kx.extend(xs)
                ky.extend(ys)
                self.stats.points += len(xs)
            self._bars.update(bars)
            self._values.update(values)
            msg = {"kind": "append", "data": data}
            if bars:
                msg["bars"] = bars
            if values:
                msg["values"] = values
            if times:           # ms after the first: 1-3 digits each, not 14
                t0 = round(times[0], 3)
                msg["t"] = {"t0": t0, "ms": [round(1e3 * (t - t0)) for t in times]}
            self._post(msg)
            now = time.time()
            lat = self.stats.latencies
            if len(lat) < MAX_LATENCIES:
                lat.extend(now - t for t in times)
            self.stats.send_time += time.perf_counter() - t0
            return True

    def _post(self, msg: dict) -> None:
        self.send(msg)
        self.stats.messages += 1
        self._last_send = time.perf_counter()
        self.clock.due_at = self._last_send + self.interval

    def _on_msg(self, _widget, content, _buffers) -> None:
        if isinstance(content, dict) and content.get("kind") == "hello":
            self.flush()
            with self._send_lock:
                self._post({"kind": "reset", "data": self._data, "bars": self._bars,
                            "values": self._values})

    # -- the timer thread: sends what push() left for later ------------------------------
    def arm(self) -> None:
        """Make sure the timer sends what is buffered (push() when not due)."""
        if self.clock.armed:        # once per message, not once per point
            return
        self.clock.armed = True
        if self._timer is None and not self._closed:
            self._timer = threading.Thread(target=self._loop, name="hpclab-liveplot",
                                           daemon=True)
            self._timer.start()
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait()       # armed: points wait in the buffer
            if self._closed:
                return
            delay = self.interval * (1 + self.timer_lag) - (time.perf_counter() - self._last_send)
            if delay > 0:
                time.sleep(delay)
                continue        # look again: a pusher may have sent (and disarmed) meanwhile
            cpu0 = time.thread_time()
            if self.flush():
                self.stats.timer_messages += 1
            if self.on_timer is not None:
                self.on_timer()
            self.stats.timer_cpu += time.thread_time() - cpu0

    def close(self) -> None:
        if not hasattr(self, "_closed"):      # __init__ failed before its attributes
            return super().close()
        self.flush()
        self._closed = True
        self._wake.set()
        if self._timer is not None:
            self._timer.join(timeout=2)
        super().close()

    def stop(self) -> None:
        """Send what is left and end the timer thread; the view stays on the page."""
        self.flush()
        self._closed = True
        self._wake.set()
        if self._timer is not None:
            self._timer.join(timeout=2)
            self._timer = None

"""Redraw a widget from a background thread, as often as latency asks and cost allows.

Training calls a widget with each record (microseconds: an append under a lock); the
widget pokes its Renderer, which draws a little later on its own thread. Two knobs:

    max_latency   new data should be on screen within this many seconds (0.5)
    budget        drawing may take at most this share of the wall time (0.03)

so, with t_draw a running mean of the draw time, the pause between draws is

    interval = min(max(max_latency, t_draw / budget) − t_draw,  max_interval)

A 15 ms draw is shown within 0.5 s at a 3 % cost; a slower draw is shown less often
rather than slowing training down, but never less than every `max_interval` (2 s) so the
picture stays live on a busy machine (where drawing then takes t_draw / 2 s of the
time). The widget reports both figures.

A caller on the training thread itself (a `fit` callback) should call `tick()`: it draws
right there when a draw is due. Drawing on the training thread costs exactly the draw,
whereas a second Python thread competing for the GIL with a PyTorch loop slows every
small operator down (the loop waits up to the 5 ms switch interval each time it wants the
GIL back), which measured several times the draw's own cost.

    r = Renderer(update_fn).start()
    r.poke()      # from any thread: something new, draw when due
    r.tick()      # from the training thread: draw now if due
    r.stop()      # one last draw, then the thread ends
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class RenderStats:
    draws: int = 0
    draw_time: float = 0.0        # total seconds spent in update_fn
    last_draw: float = 0.0        # seconds the last update_fn took
    mean_draw: float = 0.0        # running mean (weight 0.3 on the newest)
    last_end: float = 0.0         # time.perf_counter() when the last draw ended
    started: float = 0.0          # time.perf_counter() when the thread started
    stopped: float = 0.0          # ... and when stop() was called (0: still running)

    @property
    def duty_cycle(self) -> float:
        """Fraction of wall time spent drawing between start and stop (or now)."""
        end = self.stopped or time.perf_counter()
        elapsed = end - self.started if self.started else 0.0
        return self.draw_time / elapsed if elapsed > 0 else 0.0


class Renderer:
    def __init__(self, update: Callable[[], None], max_latency: float = 0.5,
                 budget: float = 0.03, min_interval: float = 0.05, max_interval: float = 2.0):
        if max_latency <= 0:
            raise ValueError(f"max_latency must be > 0 seconds, got {max_latency}")
        if not 0 < budget <= 1:
            raise ValueError(f"budget must be in (0, 1], got {budget}")
        if not 0 <= min_interval <= max_latency:
            raise ValueError(f"min_interval must be in [0, max_latency={max_latency}], "
                             f"got {min_interval}")
        self.update = update
        self.max_latency = max_latency
        self.budget = budget
        self.min_interval = min_interval
        self.max_interval = max(max_interval, max_latency)
        self.stats = RenderStats()
        self.error: BaseException | None = None
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        """Seconds from the end of one draw to the start of the next."""
        t = self.stats.mean_draw
        wanted = max(self.max_latency, t / self.budget) - t
        return min(max(wanted, self.min_interval), self.max_interval)

    def due(self) -> bool:
        return time.perf_counter() - self.stats.last_end >= self.interval

    def tick(self) -> bool:
        """Draw now, on the calling thread, if there is news and a draw is due."""
        if self._dirty.is_set() and self.due():
            self._dirty.clear()
            self.draw_now()
            return True
        return False

    def poke(self) -> None:
        """Say that there is something new to draw (cheap; call from any thread)."""
        self._dirty.set()

    def start(self) -> Renderer:
        if self._thread is None or not self._thread.is_alive():
            self._stopping.clear()
            self.stats.started, self.stats.stopped = time.perf_counter(), 0.0
            self._thread = threading.Thread(target=self._loop, name="hpclab-renderer",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread after one last draw of whatever arrived."""
        self.stats.stopped = time.perf_counter()
        self._stopping.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def draw_now(self) -> None:
        t0 = time.perf_counter()
        try:
            self.update()
        finally:
            end = time.perf_counter()
            dt = end - t0
            st = self.stats
            st.mean_draw = dt if st.draws == 0 else 0.7 * st.mean_draw + 0.3 * dt
            st.draws += 1
            st.draw_time += dt
            st.last_draw, st.last_end = dt, end

    def _loop(self) -> None:
        while True:
            self._dirty.wait()
            # wait until a draw is due (an inline tick() may draw first), or stop() is called
            pause = self.interval - (time.perf_counter() - self.stats.last_end)
            stopping = self._stopping.wait(pause) if pause > 0 else self._stopping.is_set()
            if not self._dirty.is_set() and not stopping:
                continue                      # tick() drew it meanwhile
            self._dirty.clear()
            try:
                self.draw_now()
            except Exception as exc:  # noqa: BLE001 -- kept for the widget to show, not lost in a thread
                self.error = exc
                return
            if stopping:
                return

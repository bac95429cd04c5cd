"""A background thread that redraws a widget at most every few hundred milliseconds.

Training calls a widget with each record (microseconds: an append under a lock); this
thread wakes up, folds the new records into the widget's state and redraws. Redrawing
from a thread rather than from the training loop keeps the notebook's kernel free
(ipympl pushes the picture itself) and lets the drawing rate adapt to its own cost:

    interval = clamp(t_draw / budget, min_interval, max_latency)

With budget = 0.03 a 15 ms draw happens at most every 0.5 s, i.e. drawing takes <= 3 %
of the time; a slower draw is still shown within `max_latency` (the dashboard then
reports its measured duty cycle so the cost is visible, not hidden).

    r = Renderer(update_fn, max_latency=0.5, budget=0.03)
    r.start(); r.poke(); ...; r.stop()
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
    started: float = 0.0          # time.perf_counter() when the thread started

    @property
    def duty_cycle(self) -> float:
        """Fraction of wall time spent drawing since start."""
        elapsed = time.perf_counter() - self.started if self.started else 0.0
        return self.draw_time / elapsed if elapsed > 0 else 0.0


class Renderer:
    def __init__(self, update: Callable[[], None], max_latency: float = 0.5,
                 budget: float = 0.03, min_interval: float = 0.05):
        if max_latency <= 0:
            raise ValueError(f"max_latency must be > 0 seconds, got {max_latency}")
        if not 0 < budget <= 1:
            raise ValueError(f"budget must be in (0, 1], got {budget}")
        if min_interval < 0 or min_interval > max_latency:
            raise ValueError(f"min_interval must be in [0, max_latency={max_latency}], "
                             f"got {min_interval}")
        self.update = update
        self.max_latency = max_latency
        self.budget = budget
        self.min_interval = min_interval
        self.stats = RenderStats()
        self.error: BaseException | None = None
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        wanted = self.stats.last_draw / self.budget
        return min(max(wanted, self.min_interval), self.max_latency)

    def poke(self) -> None:
        """Say that there is something new to draw (cheap; call from any thread)."""
        self._dirty.set()

    def start(self) -> Renderer:
        if self._thread is None or not self._thread.is_alive():
            self._stopping.clear()
            self.stats.started = time.perf_counter()
            self._thread = threading.Thread(target=self._loop, name="hpclab-renderer",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread after one last draw of whatever arrived."""
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
            dt = time.perf_counter() - t0
            self.stats.draws += 1
            self.stats.draw_time += dt
            self.stats.last_draw = dt

    def _loop(self) -> None:
        while True:
            self._dirty.wait()
            stopping = self._stopping.is_set()
            self._dirty.clear()
            try:
                self.draw_now()
            except Exception as exc:  # noqa: BLE001 -- kept for the widget to show, not lost in a thread
                self.error = exc
                return
            if stopping:
                return
            # sleep out the interval, but wake at once for stop()
            self._stopping.wait(self.interval)

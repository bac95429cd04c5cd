"""Redraw a widget from a background thread, as often as latency asks and cost allows.

Training calls a widget with each record (microseconds: an append under a lock); the
widget pokes its Renderer, which draws a little later on its own thread. Two knobs:

    max_latency   new data should be on screen within this many seconds (0.5)
    budget        drawing may take at most this share of the wall time (0.03)

The budget is a token bucket. Drawing time is earned at `budget` seconds per second of
wall time, at most `burst` seconds of it saved up, and every draw spends what it took:

    credit(t) = min(burst, credit(t₀) + budget·(t − t₀)) − (time of the draws since t₀)

A draw is due when there is news, credit ≥ 0 and max_latency − t̄ has passed since the
last draw (t̄: the running mean of the draw time; no point drawing faster than promised).
Over any T seconds drawing then takes at most budget·T + burst, whatever each draw costs:
a 15 ms update of the lines and a 100 ms redraw of every label count alike (an average
of the two, as a fixed interval would use, lets a run of cheap draws be followed by an
expensive one that breaks the budget). A 15 ms draw is shown within 0.5 s at a 3 % cost;
a slower draw is shown less often, but never less than every `max_interval` (5 s), so the
picture stays live on a busy machine. The widget reports both figures.

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

TICKING = 0.25   # s: a tick() this recent means the training thread will draw itself


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
                 budget: float = 0.03, min_interval: float = 0.05, max_interval: float = 5.0,
                 burst: float = 0.05):
        if max_latency <= 0:
            raise ValueError(f"max_latency must be > 0 seconds, got {max_latency}")
        if not 0 < budget <= 1:
            raise ValueError(f"budget must be in (0, 1], got {budget}")
        if not 0 <= min_interval <= max_latency:
            raise ValueError(f"min_interval must be in [0, max_latency={max_latency}], "
                             f"got {min_interval}")
        if burst < 0:
            raise ValueError(f"burst must be >= 0 seconds, got {burst}")
        self.update = update
        self.max_latency = max_latency
        self.budget = budget
        self.min_interval = min_interval
        self.max_interval = max(max_interval, max_latency)
        self.burst = burst
        self.stats = RenderStats()
        self.error: BaseException | None = None
        self._credit = burst                      # seconds of drawing allowed ...
        self._credit_at = time.perf_counter()     # ... as of this moment
        self._dirty = threading.Event()
        self._drawing = threading.Lock()          # one draw at a time: thread or tick()
        self._last_tick = 0.0                     # when a training thread last called tick()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def credit(self, now: float | None = None) -> float:
        """Seconds of drawing the budget allows now (negative: in debt)."""
        now = time.perf_counter() if now is None else now
        earned = self.budget * max(now - self._credit_at, 0.0)
        return min(self.burst, self._credit + earned)

    def wait_time(self) -> float:
        """Seconds until the next draw is due (0: due now)."""
        now = time.perf_counter()
        since = now - self.stats.last_end
        if since >= self.max_interval:
            return 0.0
        pace = max(self.max_latency - self.stats.mean_draw, self.min_interval) - since
        debt = max(-self.credit(now), 0.0) / self.budget
        return max(0.0, min(max(pace, debt), self.max_interval - since))

    def due(self) -> bool:
        return self.wait_time() <= 0.0

    def tick(self) -> bool:
        """Draw now, on the calling thread, if there is news and a draw is due (and the
        renderer thread is not drawing at this very moment)."""
        self._last_tick = time.perf_counter()
        if not (self._dirty.is_set() and self.due()):
            return False
        if not self._drawing.acquire(blocking=False):
            return False
        try:
            if not self.due():             # the other thread drew just before the lock
                return False
            self._dirty.clear()
            self._draw()
            return True
        finally:
            self._drawing.release()

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
        """Draw now, whatever the budget says (waits for a draw in progress)."""
        with self._drawing:
            self._draw()

    def _draw(self) -> None:
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
            self._credit, self._credit_at = self.credit(end) - dt, end

    def _loop(self) -> None:
        while True:
            self._dirty.wait()
            # wait until a draw is due (an inline tick() may draw first), or stop() is called
            pause = self.wait_time()
            stopping = self._stopping.wait(pause) if pause > 0 else self._stopping.is_set()
            if not stopping and time.perf_counter() - self._last_tick < TICKING:
                # a training thread is calling tick(): leave the draw to it (no GIL fight);
                # this thread draws only when training pauses (evaluation, a stall)
                stopping = self._stopping.wait(TICKING)
                if not stopping:
                    continue
            with self._drawing:
                if not stopping and not (self._dirty.is_set() and self.due()):
                    continue                  # tick() drew meanwhile
                self._dirty.clear()
                try:
                    self._draw()
                except Exception as exc:  # noqa: BLE001 -- kept for the widget to show, not lost in a thread
                    self.error = exc
                    return
            if stopping:
                return

"""The dashboard's picture: loss, throughput and time split, cheap to redraw many times.

Text (tick labels, titles, legends) costs most of a matplotlib draw. So the Axes limits
grow in steps (`_stepped`: to a round number with head-room) rather than with every new
point, and between two changes of limits only the data artists are redrawn on top of a
saved background (blitting):

    full redraw   limits or ranks changed: draw everything, keep the background
    fast redraw   restore the background, draw lines and bars, push the pixels

    plot = DashboardPlot(fig, live=True)
    plot.update(state)        # set the data; returns True when a full redraw is needed
    plot.render(canvas)       # full or fast, pushes the frame (ipympl canvas)

With live=False (a static figure for snapshot()) nothing is animated and savefig draws all.
"""

from __future__ import annotations

import math

import numpy as np

from hpclab.widgets.dashboard_state import DashboardState

SPLIT_NAMES = ("compute", "comm", "optimizer", "other")
SPLIT_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c0c0c0")


def smooth(ys, window: int = 10) -> np.ndarray:
    """Running mean over the last `window` points (throughput is noisy step to step):
    out[i] = mean(ys[max(0, i − window + 1) : i + 1])."""
    ys = np.asarray(ys, dtype=float)
    c = np.concatenate([[0.0], np.cumsum(ys)])
    i = np.arange(1, len(ys) + 1)
    k = np.minimum(i, window)
    return (c[i] - c[i - k]) / k


def thin(xs, ys, most: int = 600):
    """Every k-th point so a line has at most `most`: a 250-pixel-wide plot shows no more,
    and drawing cost stays flat however long the run."""
    k = max(-(-len(xs) // most), 1)      # ceil
    if k == 1:
        return xs, ys
    return xs[::k] + xs[-1:], list(ys[::k]) + list(ys[-1:])


def _stepped(lo: float, hi: float, cur: tuple | None, zero_floor: bool = False,
             room: float = 0.15) -> tuple:
    """Keep `cur` while the data fit and fill more than a quarter of it; else a new range
    with `room` head-room, so limits (and tick labels) change only now and then."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return cur or (0.0, 1.0)
    if cur is not None:
        span = cur[1] - cur[0]
        if cur[0] <= lo and hi <= cur[1] and (hi - lo) >= span / 4:
            return cur
    pad = room * max(hi - lo, abs(hi) * 1e-3, 1e-12)
    new_lo = 0.0 if zero_floor and lo >= 0 else lo - pad
    return (new_lo, hi + pad)


class DashboardPlot:
    def __init__(self, fig, live: bool = True):
        self.fig, self.live = fig, live
        fig.subplots_adjust(left=0.05, right=0.99, bottom=0.16, top=0.9, wspace=0.25)
        self.ax_loss, self.ax_thr, self.ax_split = fig.subplots(1, 3, width_ratios=[1, 1, 0.8])
        self.ax_loss.set(title="loss", xlabel="step")
        self.ax_thr.set(title="throughput (samples/s, mean of 10 steps)", xlabel="step")
        self.ax_split.set(title="time per step (ms)")
        self.loss_lines: dict[int, object] = {}
        self.thr_lines: dict[int, object] = {}
        self.loss_mean = self._line(self.ax_loss, color="black", lw=2, label="mean")
        self.val = self._line(self.ax_loss, fmt="o-", color="crimson", ms=3, lw=1,
                              label="validation")
        self.thr_total = self._line(self.ax_thr, color="black", lw=2, label="total")
        self.bars: list = []
        self.bar_rows: list[str] = []
        self.limits: dict = {}
        self._background = None
        self._needs_full = True

    def _line(self, ax, fmt="-", **kwargs):
        line = ax.plot([], [], fmt, **kwargs)[0]
        line.set_animated(self.live)
        return line

    def _animated(self):
        yield from self.loss_lines.values()
        yield from self.thr_lines.values()
        yield from (self.loss_mean, self.val, self.thr_total)
        for bars in self.bars:
            yield from bars

    def _rank_line(self, lines, ax, rank):
        if rank not in lines:
            lines[rank] = self._line(ax, lw=1, alpha=0.7, label=f"rank {rank}")
            self._needs_full = True
        return lines[rank]

    def _set_limits(self, name, ax, xs, ys, total, zero_floor=False):
        if not xs:
            return
        # the whole run when its length is known (the x axis doubles as a progress bar and
        # never changes); else quadruple the range whenever it fills up
        x = ((0.0, total * 1.02) if total else
             _stepped(0.0, max(xs), self.limits.get(name + "x"), zero_floor=True, room=3.0))
        y = _stepped(min(ys), max(ys), self.limits.get(name + "y"), zero_floor=zero_floor,
                     room=0.3)
        if (x, y) != (self.limits.get(name + "x"), self.limits.get(name + "y")):
            self.limits[name + "x"], self.limits[name + "y"] = x, y
            ax.set_xlim(*x)
            ax.set_ylim(*y)
            self._needs_full = True

    def update(self, state: DashboardState) -> None:
        multi = len(state.ranks) > 1
        ys_loss, ys_thr, xs = [], [], []
        for r, s in state.ranks.items():
            self._rank_line(self.loss_lines, self.ax_loss, r).set_data(*thin(s.steps, s.loss))
            ys_loss += s.loss[-1:] + [min(s.loss, default=0), max(s.loss, default=0)]
            xs += s.steps[-1:]
            if multi:
                self._rank_line(self.thr_lines, self.ax_thr, r).set_data(
                    *thin(s.steps, smooth(s.throughput)))
        self.loss_mean.set_data(*thin(*state.loss_aggregate()))
        vs, vl = state.val_aggregate()
        self.val.set_data(vs, vl)
        steps, thr = state.throughput_aggregate()
        thr = smooth(thr)
        self.thr_total.set_data(*thin(steps, thr))
        ys_thr = [thr.min(initial=0), thr.max(initial=0)]
        if xs and self.ax_loss.get_legend() is None or self._needs_full:
            handles = [ln for ln in self.ax_loss.get_lines() if len(ln.get_xdata())]
            if handles:
                self.ax_loss.legend(handles=handles, fontsize=7, loc="upper right")
                self.ax_thr.legend(fontsize=7, loc="upper right")
        self._set_limits("loss", self.ax_loss, xs, ys_loss + vl, state.total_steps,
                         zero_floor=True)
        self._set_limits("thr", self.ax_thr, xs, ys_thr, state.total_steps, zero_floor=True)
        self._update_bars(state, multi)

    def _update_bars(self, state: DashboardState, multi: bool) -> None:
        rows = [("all", state.time_split())]
        if multi:
            rows += [(f"rank {r}", state.time_split(r)) for r in sorted(state.ranks)]
        names = [n for n, _ in rows]
        if names != self.bar_rows:       # a new rank: build the bars again
            self.ax_split.clear()
            self.ax_split.set(title="time per step (ms)")
            self.bars = [self.ax_split.barh(names, [0] * len(names), color=color, label=name,
                                            animated=self.live)
                         for name, color in zip(SPLIT_NAMES, SPLIT_COLORS)]
            self.ax_split.invert_yaxis()
            self.ax_split.legend(fontsize=7, loc="upper center", ncols=4, handlelength=1,
                                 bbox_to_anchor=(0.5, -0.06), frameon=False)
            self.bar_rows = names
            self.limits.pop("split", None)
            self._needs_full = True
        left = [0.0] * len(rows)
        for i, bars in enumerate(self.bars):
            for j, rect in enumerate(bars):
                width = 1e3 * rows[j][1][i]
                rect.set_x(left[j])
                rect.set_width(width)
                left[j] += width
        x = _stepped(0.0, max(max(left), 1e-3), self.limits.get("split"), zero_floor=True,
                     room=0.5)
        if x != self.limits.get("split"):
            self.limits["split"] = x
            self.ax_split.set_xlim(*x)
            self._needs_full = True

    def render(self, canvas) -> bool:
        """Push a frame to `canvas` (an ipympl canvas); True if it was a full redraw."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        full = self._needs_full or self._background is None
        if full:
            FigureCanvasAgg.draw(canvas)          # everything that is not animated
            self._background = canvas.copy_from_bbox(self.fig.bbox)
            self._needs_full = False
        else:
            canvas.restore_region(self._background)
        for artist in self._animated():
            artist.axes.draw_artist(artist)
        canvas._force_full = True                 # whole frames: no diff to go stale
        canvas.blit(self.fig.bbox)                # webagg: mark the PNG old and push it
        return full

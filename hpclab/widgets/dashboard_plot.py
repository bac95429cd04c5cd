"""The dashboard's picture in matplotlib: `dash.snapshot()`, exported HTML, slides, CI.

The live view is drawn by the browser (liveplot.js, panels declared in dashboard.py);
this draws the same three panels from a DashboardState into a plain Figure, with the
same colours: one per rank (RANK_COLORS, the same in all three panels), black for the job.

    fig = Figure(figsize=(13, 4))
    draw_dashboard(fig, state)
"""

from __future__ import annotations

import numpy as np

from hpclab.widgets.dashboard_state import DashboardState

SPLIT_NAMES = ("compute", "comm", "optimizer", "other")
SPLIT_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c0c0c0")
# per-rank colours: none of them is a time-split colour, black or the validation red
RANK_COLORS = ("#8172b3", "#17becf", "#da8bc3", "#bcbd22", "#937860", "#e377c2",
               "#7f7f7f", "#9edae5")
VAL_COLOR = "crimson"
SMOOTH = 10              # throughput: running mean over this many steps
FONT = 11                # points: legible on a projector at 1400x900


def rank_color(rank: int) -> str:
    return RANK_COLORS[rank % len(RANK_COLORS)]


def smooth(ys, window: int = SMOOTH) -> np.ndarray:
    """Running mean over the last `window` points (throughput is noisy step to step):
    out[i] = mean(ys[max(0, i − window + 1) : i + 1])."""
    ys = np.asarray(ys, dtype=float)
    c = np.concatenate([[0.0], np.cumsum(ys)])
    i = np.arange(1, len(ys) + 1)
    k = np.minimum(i, window)
    return (c[i] - c[i - k]) / k


def draw_dashboard(fig, state: DashboardState) -> None:
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.28, top=0.9, wspace=0.28)
    ax_loss, ax_thr, ax_split = fig.subplots(1, 3, width_ratios=[1, 1, 0.8])
    multi = len(state.ranks) > 1
    for r, s in sorted(state.ranks.items()):
        if multi:
            ax_loss.plot(s.steps, s.loss, lw=1, alpha=0.8, color=rank_color(r),
                         label=f"rank {r}")
            ax_thr.plot(s.steps, smooth(s.throughput), lw=1, alpha=0.8, color=rank_color(r),
                        label=f"rank {r}")
    ax_loss.plot(*state.loss_aggregate(), color="black", lw=2, label="mean" if multi else "loss")
    vs, vl = state.val_aggregate()
    if vs:
        ax_loss.plot(vs, vl, "o", color=VAL_COLOR, ms=4, label="validation")
    steps, thr = state.throughput_aggregate()
    ax_thr.plot(steps, smooth(thr), color="black", lw=2, label="job" if multi else "samples/s")
    if state.total_steps:
        for ax in (ax_loss, ax_thr):
            ax.set_xlim(0, state.total_steps * 1.02)
    ax_loss.set_ylim(bottom=0)
    ax_thr.set_ylim(bottom=0)
    ax_loss.set_title("loss", fontsize=FONT + 1)
    ax_thr.set_title(f"samples/s (mean of {SMOOTH} steps)", fontsize=FONT + 1)
    for ax in (ax_loss, ax_thr):
        ax.set_xlabel("step", fontsize=FONT)
        ax.tick_params(labelsize=FONT)
        ax.grid(color="#e6e6e6")
        if state.ranks:
            ax.legend(fontsize=FONT - 1, loc="upper right")

    rows = [("all", state.time_split(), "#222222")]
    if multi:
        rows += [(f"rank {r}", state.time_split(r), rank_color(r)) for r in sorted(state.ranks)]
    names = [n for n, _, _ in rows]
    left = np.zeros(len(rows))
    for i, (name, color) in enumerate(zip(SPLIT_NAMES, SPLIT_COLORS)):
        widths = np.array([1e3 * split[i] for _, split, _ in rows])
        ax_split.barh(names, widths, left=left, color=color, label=name)
        left += widths
    ax_split.invert_yaxis()
    for label, (_, _, color) in zip(ax_split.get_yticklabels(), rows):
        label.set_color(color)
    ax_split.set_title("time per step (ms)", fontsize=FONT + 1)
    ax_split.tick_params(labelsize=FONT)
    ax_split.legend(fontsize=FONT - 1, loc="upper center", ncols=2, handlelength=1,
                    bbox_to_anchor=(0.5, -0.1), frameon=False)

"""Pictures of a pipeline step: one row per rank, a box per forward (F) and backward (B).

    events = [e for r in results for e in r.events]     # PipelineTimeline.events of all ranks
    draw_timeline(events, title="1F1B, p=4, m=8")        # or simulate(lists) for the ideal one
    print(idle_fraction(events))                         # the measured bubble

Events are (rank, kind, i, c, t_start, t_end); measured ones come from `run_schedule`'s
PipelineTimeline (time.perf_counter(), one clock for the processes of one host; on
several hosts clocks differ by more than a step), ideal ones from `simulate`. Box labels:
F3 is micro-batch 3's forward, F3.1 the same through model chunk 1 (interleaved, drawn
lighter). White space is the bubble.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from hpclab.parallel.pipeline_schedule import bubble

COLOURS = {"F": ("tab:blue", "lightskyblue"), "B": ("tab:orange", "navajowhite")}


def idle_fraction(events) -> float:
    """1 − Σ busy / (p × step): waiting and messages count as idle (pipeline_schedule.bubble)."""
    return bubble(events)


def draw_timeline(events, ax=None, title: str | None = None, unit: float = 1e3,
                  xlabel: str = "time in the step (ms)"):
    """Draw per-rank F/B boxes on `ax` (a new figure when None); returns the axes.
    unit scales times (1e3: seconds to ms; 1 for the unit times of `simulate`)."""
    events = list(events)
    p = 1 + max(e[0] for e in events)
    if ax is None:
        ax = plt.subplots(figsize=(11, 0.6 + 0.5 * p))[1]
    t0 = min(e[4] for e in events)
    for rank, kind, i, c, a, b in events:
        colour = COLOURS[kind][min(c, 1)]
        ax.broken_barh([(unit * (a - t0), unit * (b - a))], (p - 1 - rank - 0.4, 0.8),
                       facecolor=colour, edgecolor="white")
        ax.text(unit * (a + b - 2 * t0) / 2, p - 1 - rank, f"{kind}{i}" + (f".{c}" if c else ""),
                ha="center", va="center", fontsize=7, color="black" if c else "white")
    ax.set_yticks(range(p), [f"rank {p - 1 - r}" for r in range(p)])
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    return ax

"""The all-reduce visualiser: p ranks as boxes, pieces of the vector moving step by step.

    from hpclab.widgets import AllReduceVisualiser
    viz = AllReduceVisualiser(world_size=4)                   # traces recorded on 4 local
    viz                                                       # processes, one per algorithm
    AllReduceVisualiser(cluster=cluster)                      # ... or on the engines

Each algorithm (ring, tree, halving-doubling, naive) runs once for real with
`hpclab.comm.tracing()`; the trace drives the picture. A rank's box shows its pieces of
the vector, shaded by how many ranks' data each piece already sums (white: only its own,
dark: all p). During a step the pieces in flight slide from sender to receiver (orange:
summed on arrival, green: copied). Right: the α–β–γ time of every step for a vector of
the chosen size, the current one highlighted, against `hpclab.comm.cost_model`'s formula.
Play/pause, step back/forward and a step slider drive it; the Play widget ticks in the
browser. Each frame is drawn by matplotlib in the kernel, on one thread that always draws
the newest frame asked for (those asked for meanwhile are skipped), and shown as a PNG
image; `viz.snapshot()` gives the same picture as a static PNG.
"""

from __future__ import annotations

import threading

import ipywidgets as W
import numpy as np
from matplotlib.patches import FancyBboxPatch, Rectangle

from hpclab.comm.cost_model import predict
from hpclab.widgets.allreduce_state import ASSUMED, COPY_PHASES, Replay, record_trace
from hpclab.widgets.figure import DRAW_LOCK, StaticFallback, figure_png

ALGORITHMS = ("ring", "tree", "halving_doubling", "naive")
SUB = 6                      # animation frames per step (the pieces' slide)
ARROW = {"arrowstyle": "->", "lw": 0.8, "color": "grey", "alpha": 0.5}
FIGSIZE, DPI = (12.0, 5.0), 96     # 1152x480 px: fits a 1400x900 projector


def _positions(p: int) -> np.ndarray:
    angles = np.pi / 2 - 2 * np.pi * np.arange(p) / p     # rank 0 on top, clockwise
    return np.stack([np.cos(angles), np.sin(angles)], axis=1) * (1.0 if p > 1 else 0.0)


def draw_frame(replay: Replay, algorithm: str, frame: int, nbytes: float, params,
               ax_ranks, ax_cost) -> None:
    """Draw animation frame `frame` (step = frame // SUB): used live and static."""
    ax_ranks.clear()
    ax_cost.clear()
    p, n_steps = replay.p, len(replay)
    k, t = divmod(min(frame, n_steps * SUB), SUB)
    pos = _positions(p)
    w, h = 0.62, 0.26
    cell = w / replay.n_pieces
    holdings = replay.holdings(k)
    for r in range(p):
        x, y = pos[r]
        ax_ranks.add_patch(FancyBboxPatch((x - w / 2 - 0.03, y - h / 2 - 0.03), w + 0.06,
                                          h + 0.06, boxstyle="round,pad=0.02", fc="#f4f4f4",
                                          ec="black"))
        ax_ranks.text(x, y + h / 2 + 0.08, f"rank {r}", ha="center", fontsize=11)
        for c, owners in enumerate(holdings[r]):
            shade = len(owners) / p
            ax_ranks.add_patch(Rectangle((x - w / 2 + c * cell, y - h / 2), cell, h,
                                         fc=(1 - 0.8 * shade, 1 - 0.55 * shade, 1 - 0.1 * shade),
                                         ec="grey", lw=0.5))
            if replay.n_pieces <= 8:
                ax_ranks.text(x - w / 2 + (c + 0.5) * cell, y, str(len(owners)),
                              ha="center", va="center", fontsize=9)
    if k < n_steps:
        for mv in replay.steps[k]:
            a, b = pos[mv.src], pos[mv.dst]
            ax_ranks.annotate("", xy=b, xytext=a, arrowprops=ARROW)
            x, y = a + (b - a) * (t / SUB)
            color = "#55a868" if mv.phase in COPY_PHASES else "#dd8452"
            size = cell * len(mv.pieces)
            ax_ranks.add_patch(Rectangle((x - size / 2, y - 0.06), size, 0.12, fc=color,
                                         ec="black", lw=0.6, zorder=5))
            label = ",".join(map(str, mv.pieces)) if replay.n_pieces > 1 else "all"
            ax_ranks.text(x, y, label, ha="center", va="center", fontsize=9, zorder=6)
        title = f"{algorithm}, p = {p}: step {k + 1} of {n_steps} ({replay.phase(k)})"
    else:
        title = f"{algorithm}, p = {p}: done, every piece sums all {p} ranks"
    ax_ranks.set_title(title, fontsize=12)
    ax_ranks.set(xlim=(-1.6, 1.6), ylim=(-1.45, 1.45), aspect="equal")
    ax_ranks.axis("off")

    costs = [1e6 * replay.step_cost(i, params, nbytes) for i in range(n_steps)]
    colors = ["#dd8452" if i == k else "#9db4d6" for i in range(n_steps)]
    ax_cost.bar(np.arange(1, n_steps + 1), costs, color=colors)
    model = 1e6 * predict(algorithm, nbytes, p, params)
    ax_cost.set_title(f"α–β–γ time per step, n = {nbytes / 2**20:.3g} MiB\n"
                      f"sum {sum(costs):.3g} µs · model formula {model:.3g} µs", fontsize=11)
    ax_cost.set(xlabel="step", ylabel="µs", xticks=np.arange(1, n_steps + 1))
    ax_cost.tick_params(labelsize=10)


class AllReduceVisualiser(StaticFallback, W.VBox):
    def __init__(self, world_size: int = 4, cluster=None, algorithms=ALGORITHMS,
                 params=ASSUMED, nbytes: float = 16 * 2**20, traces: dict | None = None):
        # first, so that close() (which ipywidgets also calls from __del__) works even
        # when a bad argument stops the constructor below
        self._cv = threading.Condition()
        self._closed = False
        unknown = sorted(set(algorithms) - set(ALGORITHMS))
        if unknown:
            raise ValueError(f"unknown algorithms {unknown}; choose from {list(ALGORITHMS)}")
        if cluster is None and world_size < 2:
            raise ValueError(f"world_size must be >= 2 to see messages, got {world_size}")
        self.cluster, self.params = cluster, params
        self.world_size = cluster.world_size if cluster is not None else world_size
        self.replays: dict[str, Replay] = {}
        for name, (msgs, total) in (traces or {}).items():
            self.replays[name] = Replay(msgs, self.world_size, total)
        self.image = W.Image(format="png", layout=W.Layout(width=f"{FIGSIZE[0] * DPI}px"))
        self.algorithm = W.ToggleButtons(options=list(algorithms), value=algorithms[0],
                                         description="algorithm")
        self.play = W.Play(value=0, min=0, max=1, interval=120, description="play")
        self.frame = W.IntSlider(value=0, min=0, max=1, description="frame", readout=False)
        W.jslink((self.play, "value"), (self.frame, "value"))
        self.back = W.Button(description="◀ step", layout=W.Layout(width="80px"))
        self.forward = W.Button(description="step ▶", layout=W.Layout(width="80px"))
        self.back.on_click(lambda _: self._jump(-1))
        self.forward.on_click(lambda _: self._jump(+1))
        self.size = W.FloatLogSlider(value=nbytes, base=2, min=10, max=30, step=1,
                                     description="n (bytes)", readout_format=".3g",
                                     continuous_update=False)
        self.error: BaseException | None = None
        self.frames_drawn = 0
        # the frames: drawn on one thread, always the newest one asked for; frames asked
        # for while a draw runs are skipped, so Play never builds a backlog
        self._asked = self._drawn = 0          # requests made / satisfied (a counter each)
        self._thread: threading.Thread | None = None
        self.algorithm.observe(lambda _: self._load(), "value")
        self.frame.observe(lambda _: self._request(), "value")
        self.size.observe(lambda _: self._request(), "value")
        super().__init__([
            self.algorithm,
            W.HBox([self.play, self.back, self.forward, self.frame, self.size]),
            self.image,
        ])
        self._load()
        self._show()                  # the first frame now: headless output has it too

    @property
    def replay(self) -> Replay:
        name = self.algorithm.value
        if name not in self.replays:
            msgs, total = record_trace(name, self.world_size, cluster=self.cluster)
            self.replays[name] = Replay(msgs, self.world_size, total)
        return self.replays[name]

    @property
    def step(self) -> int:
        return min(self.frame.value // SUB, len(self.replay))

    def _load(self) -> None:
        last = len(self.replay) * SUB
        self.play.max = self.frame.max = last
        self.play.value = self.frame.value = 0
        self._request()

    def _jump(self, direction: int) -> None:
        k = self.step + direction if direction > 0 or self.frame.value % SUB == 0 else self.step
        self.frame.value = max(0, min(k, len(self.replay))) * SUB

    # -- drawing ------------------------------------------------------------------------
    def _request(self) -> None:
        with self._cv:
            if self._closed:
                return
            self._asked += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="hpclab-allreduce",
                                                daemon=True)
                self._thread.start()
            self._cv.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._closed or self._asked > self._drawn)
                if self._closed:
                    return
                target = self._asked
            try:
                self._show()
            except Exception as exc:  # noqa: BLE001 -- kept for the widget to show, not lost in a thread
                self.error = exc
                return
            finally:
                with self._cv:
                    self._drawn = target
                    self._cv.notify_all()

    def _show(self) -> None:
        self.image.value = figure_png(self.figure())
        self.frames_drawn += 1

    def wait_drawn(self, timeout: float = 30.0) -> bool:
        """Block until the newest frame asked for is on the image (tests, scripts)."""
        with self._cv:
            return self._cv.wait_for(lambda: self._drawn >= self._asked, timeout)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        super().close()

    # -- static output --------------------------------------------------------------------
    def figure(self, frame: int | None = None):
        """A matplotlib Figure of one frame (default: the current one)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=FIGSIZE, dpi=DPI)
        fig.subplots_adjust(left=0.02, right=0.97, bottom=0.12, top=0.86, wspace=0.15)
        with DRAW_LOCK:
            draw_frame(self.replay, self.algorithm.value,
                       self.frame.value if frame is None else frame, self.size.value,
                       self.params, *fig.subplots(1, 2, width_ratios=[1.4, 1]))
        return fig

    def snapshot(self, frame: int | None = None):
        """A static PNG of one frame (default: the current one)."""
        from IPython.display import Image

        return Image(data=figure_png(self.figure(frame)))

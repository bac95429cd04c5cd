"""The optimizer playground: race optimizers across a 2-D function's contours.

    from hpclab.widgets import OptimizerPlayground
    pg = OptimizerPlayground("rosenbrock", optimizers=["GD", "momentum", "Adam"])
    pg                      # pick the function, the optimizers, their learning rates,
                            # momentum / β / noise with sliders; press ▶ to animate

Left: contours of f with each optimizer's path θ₀, θ₁, ... drawn up to the current step;
right: f(θ_k) against k (log scale) for each of them. Every optimizer is the
hpclab.optim class (see playground_state.py); paths are recomputed when a control
changes and animated by an ipywidgets Play, which ticks in the browser, so the kernel
stays free. `pg.snapshot()` is a static PNG of the full paths (exported HTML, CI).
"""

from __future__ import annotations

import threading

import ipywidgets as W
import numpy as np

from hpclab.problems import FUNCTIONS
from hpclab.widgets.figure import DRAW_LOCK, StaticFallback, figure_png, live_figure
from hpclab.widgets.playground_state import DEFAULTS, OPTIMIZERS, Choice, run_optimizer
from hpclab.widgets.renderer import Renderer

# Learning rates that make an instructive first picture on each function (sliders change them).
START_LR = {
    "quadratic": {"GD": 0.15, "SGD (noise)": 0.1, "momentum": 0.03, "Nesterov": 0.03,
                  "Adagrad": 1.0, "RMSprop": 0.05, "Adam": 0.3},
    "rosenbrock": {"GD": 1e-3, "SGD (noise)": 5e-4, "momentum": 2e-4, "Nesterov": 2e-4,
                   "Adagrad": 0.5, "RMSprop": 0.01, "Adam": 0.05},
    "beale": {"GD": 0.01, "SGD (noise)": 0.005, "momentum": 0.002, "Nesterov": 0.002,
              "Adagrad": 0.5, "RMSprop": 0.01, "Adam": 0.05},
    "saddle": {"GD": 0.05, "SGD (noise)": 0.05, "momentum": 0.02, "Nesterov": 0.02,
               "Adagrad": 0.5, "RMSprop": 0.02, "Adam": 0.05},
}
COLORS = dict(zip(OPTIMIZERS, ("#444444", "#8c564b", "#1f77b4", "#17becf", "#9467bd",
                               "#2ca02c", "#d62728")))


class PlaygroundPlot:
    """Contours with paths up to step k (left) and f(θ_k) − f* against k (right).

    The contours are drawn once per function; moving to another step only redraws the
    paths on top of the saved background (blitting), so the animation stays cheap.
    """

    def __init__(self, fig, live: bool = True):
        self.fig, self.live = fig, live
        fig.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.92, wspace=0.22)
        self.ax_c, self.ax_l = fig.subplots(1, 2, width_ratios=[1.2, 1])
        self.artists: list = []
        self.runs: list = []
        self._background = None

    def set_scene(self, fn, runs) -> None:
        """New function or new paths: rebuild everything (a full redraw follows)."""
        ax_c, ax_l = self.ax_c, self.ax_l
        ax_c.clear()
        ax_l.clear()
        X, Y, Z = fn.grid(100)
        levels = np.unique(np.quantile(Z, np.linspace(0.0, 0.95, 20)))
        ax_c.contour(X, Y, Z, levels=levels, cmap="Greys", linewidths=0.6)
        for m in fn.minima:
            ax_c.plot(*m, "*", color="gold", ms=12, mec="black")
        self.runs, self.artists = runs, []
        for run in runs:
            c = COLORS[run.choice.name]
            path, = ax_c.plot([], [], "-", color=c, lw=1.5, label=run.choice.label,
                              animated=self.live)
            head, = ax_c.plot([], [], "o", color=c, ms=5, animated=self.live)
            loss, = ax_l.plot([], [], color=c, lw=1.5, animated=self.live)
            self.artists.append((run, fn.f_min, path, head, loss))
        ax_c.set(xlim=fn.xlim, ylim=fn.ylim, title=fn.name, xlabel="x", ylabel="y")
        ax_l.set(title="f(θ_k) − f*  (log scale)", xlabel="step k", yscale="log")
        gaps = np.concatenate([r.losses - fn.f_min for r in runs]) if runs else np.ones(1)
        gaps = gaps[np.isfinite(gaps) & (gaps > 0)]
        lo, hi = (gaps.min(), gaps.max()) if gaps.size else (1e-12, 1.0)
        ax_l.set_ylim(max(lo, 1e-16) / 2, hi * 2)
        ax_l.set_xlim(0, max((len(r.losses) - 1 for r in runs), default=1))
        if runs:
            ax_l.legend(handles=[a[2] for a in self.artists], fontsize=7, loc="lower left")
        self._background = None

    def show_step(self, k: int) -> None:
        for run, f_min, path, head, loss in self.artists:
            pts = run.points[: k + 1]
            path.set_data(pts[:, 0], pts[:, 1])
            head.set_data(pts[-1:, 0], pts[-1:, 1])
            gap = np.maximum(run.losses[: k + 1] - f_min, 1e-16)
            loss.set_data(np.arange(len(gap)), gap)

    def render(self, canvas) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        if self._background is None:
            FigureCanvasAgg.draw(canvas)
            self._background = canvas.copy_from_bbox(self.fig.bbox)
        else:
            canvas.restore_region(self._background)
        for _, _, *artists in self.artists:
            for a in artists:
                a.axes.draw_artist(a)
        canvas._force_full = True
        canvas.blit(self.fig.bbox)


class OptimizerPlayground(StaticFallback, W.VBox):
    def __init__(self, function: str = "rosenbrock", optimizers=("GD", "momentum", "Adam"),
                 steps: int = 200, seed: int = 0):
        if function not in FUNCTIONS:
            raise ValueError(f"function must be one of {sorted(FUNCTIONS)}, got {function!r}")
        unknown = sorted(set(optimizers) - set(OPTIMIZERS))
        if unknown:
            raise ValueError(f"unknown optimizers {unknown}; choose from {list(OPTIMIZERS)}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.seed = seed
        self.runs = []
        self.frame = steps
        self.fig, self.canvas = live_figure(figsize=(10, 4.2), layout=None)
        self.plot = PlaygroundPlot(self.fig)
        self._scene_changed = True
        self._hold = False          # while the function changes, sliders move in bulk
        self.function = W.Dropdown(options=list(FUNCTIONS), value=function, description="f")
        self.steps = W.IntSlider(value=steps, min=10, max=1000, step=10, description="steps")
        self.enabled = {n: W.Checkbox(value=n in optimizers, description=n, indent=False,
                                      layout=W.Layout(width="120px")) for n in OPTIMIZERS}
        self.lr = {n: W.FloatLogSlider(value=START_LR[function][n], base=10, min=-5, max=1,
                                       step=0.1, readout_format=".1e", description="lr",
                                       layout=W.Layout(width="320px")) for n in OPTIMIZERS}
        self.hyper = {
            "momentum": W.FloatSlider(value=DEFAULTS["momentum"], min=0, max=0.99, step=0.01,
                                      description="momentum"),
            "alpha": W.FloatSlider(value=DEFAULTS["alpha"], min=0.5, max=0.999, step=0.001,
                                   description="RMS α", readout_format=".3f"),
            "beta1": W.FloatSlider(value=DEFAULTS["beta1"], min=0, max=0.99, step=0.01,
                                   description="Adam β₁"),
            "beta2": W.FloatSlider(value=DEFAULTS["beta2"], min=0.5, max=0.9999, step=0.0001,
                                   description="Adam β₂", readout_format=".4f"),
            "noise": W.FloatSlider(value=DEFAULTS["noise"], min=0, max=20, step=0.5,
                                   description="noise σ"),
        }
        self.play = W.Play(value=steps, min=0, max=steps, step=max(steps // 100, 1),
                           interval=100, description="play")
        self.step_slider = W.IntSlider(value=steps, min=0, max=steps, description="step k")
        W.jslink((self.play, "value"), (self.step_slider, "value"))
        self._lock = threading.Lock()
        self.renderer = Renderer(self._draw, max_latency=0.1, budget=1.0, min_interval=0.0)

        for w in [self.function, self.steps, *self.enabled.values(), *self.lr.values(),
                  *self.hyper.values()]:
            w.observe(self._on_change, "value")
        self.function.observe(self._on_function, "value")
        self.step_slider.observe(self._on_frame, "value")
        rows = [W.HBox([self.enabled[n], self.lr[n]]) for n in OPTIMIZERS]
        super().__init__([
            W.HBox([self.function, self.steps, self.play, self.step_slider]),
            W.HBox([W.VBox(rows), W.VBox(list(self.hyper.values()))]),
            self.canvas,
        ])
        self.recompute()
        self.renderer.start()

    # -- state ------------------------------------------------------------------------
    def choices(self) -> list[Choice]:
        out = []
        for name, box in self.enabled.items():
            if box.value:
                allowed = OPTIMIZERS[name][2]
                hyper = {k: w.value for k, w in self.hyper.items() if k in allowed}
                out.append(Choice(name, lr=self.lr[name].value, **hyper))
        return out

    def recompute(self) -> None:
        """Run every chosen optimizer again and show the full paths."""
        fn = FUNCTIONS[self.function.value]
        runs = [run_optimizer(fn, c, steps=self.steps.value, seed=self.seed)
                for c in self.choices()]
        with self._lock:
            self.runs = runs
            self.frame = self.steps.value
            self._scene_changed = True
        for w in (self.play, self.step_slider):
            w.max = self.steps.value
        self.play.step = max(self.steps.value // 100, 1)
        self.step_slider.value = self.steps.value
        self.renderer.poke()
        if not self.renderer.running:
            self.renderer.draw_now()

    def _on_function(self, change) -> None:
        self._hold = True
        try:
            for name, slider in self.lr.items():
                slider.value = START_LR[change["new"]][name]
        finally:
            self._hold = False
        self.recompute()

    def _on_change(self, change) -> None:
        if not self._hold and change["owner"] is not self.function:
            self.recompute()

    def _on_frame(self, change) -> None:
        with self._lock:
            self.frame = change["new"]
        self.renderer.poke()

    # -- drawing ----------------------------------------------------------------------
    def _draw(self) -> None:
        with self._lock:
            runs, frame, changed = list(self.runs), self.frame, self._scene_changed
            self._scene_changed = False
        with DRAW_LOCK:
            if changed:
                self.plot.set_scene(FUNCTIONS[self.function.value], runs)
            self.plot.show_step(frame)
            self.plot.render(self.canvas)

    def snapshot(self):
        """A static PNG of the full paths (for exported HTML and CI)."""
        from IPython.display import Image
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 4.2), dpi=80)
        with DRAW_LOCK:
            plot = PlaygroundPlot(fig, live=False)
            plot.set_scene(FUNCTIONS[self.function.value], self.runs)
            plot.show_step(self.steps.value)
        return Image(data=figure_png(fig))

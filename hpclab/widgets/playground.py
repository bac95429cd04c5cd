"""The optimizer playground: race optimizers across a 2-D function's contours.

    from hpclab.widgets import OptimizerPlayground
    pg = OptimizerPlayground("rosenbrock", optimizers=["GD", "momentum", "Adam"])
    pg                      # pick the function, the optimizers, their learning rates,
                            # momentum / β / noise with sliders; press ▶ to animate

Left: contours of f with each optimizer's path θ₀, θ₁, ... drawn up to step k;
right: f(θ_k) − f* against k (log scale) for each of them. Every optimizer is the
hpclab.optim class (see playground_state.py). A control change reruns the optimizers
(sliders: when released) and sends the whole paths to the browser once, which draws them
(liveplot.js); Play and the step slider are linked to the plot's k in the browser, so
the animation runs without the kernel. `pg.snapshot()` is a static PNG of the full
paths in matplotlib (exported HTML, slides, CI).
"""

from __future__ import annotations

import contourpy
import ipywidgets as W
import numpy as np

from hpclab.problems import FUNCTIONS
from hpclab.widgets.figure import DRAW_LOCK, StaticFallback, figure_png
from hpclab.widgets.liveplot import LivePlot
from hpclab.widgets.playground_state import DEFAULTS, OPTIMIZERS, Choice, run_optimizer

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
CONTOUR_COLOR = "#b0b0b0"
FONT = 11      # points: legible on a projector at 1400x900


def contour_levels(Z) -> np.ndarray:
    return np.unique(np.quantile(Z, np.linspace(0.0, 0.95, 20)))


def contour_polyline(fn, n: int = 100) -> tuple[list, list]:
    """f's contour lines as one polyline, pieces separated by None (for the browser)."""
    X, Y, Z = fn.grid(n)
    gen = contourpy.contour_generator(X, Y, Z)
    xs, ys = [], []
    for level in contour_levels(Z):
        for piece in gen.lines(level):
            xs += [*np.round(piece[:, 0], 4), None]
            ys += [*np.round(piece[:, 1], 4), None]
    return xs, ys


def gap_limits(fn, runs) -> tuple[float, float]:
    """y range of the f(θ_k) − f* panel (log scale) covering every run."""
    gaps = np.concatenate([r.losses - fn.f_min for r in runs]) if runs else np.ones(1)
    gaps = gaps[np.isfinite(gaps) & (gaps > 0)]
    lo, hi = (gaps.min(), gaps.max()) if gaps.size else (1e-12, 1.0)
    return max(lo, 1e-16) / 2, hi * 2


def draw_playground(fig, fn, runs, k: int) -> None:
    """Contours with paths up to step k (left) and f(θ_k) − f* against k (right), in
    matplotlib: the static picture of what the browser draws live."""
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.13, top=0.92, wspace=0.22)
    ax_c, ax_l = fig.subplots(1, 2, width_ratios=[1.2, 1])
    X, Y, Z = fn.grid(100)
    ax_c.contour(X, Y, Z, levels=contour_levels(Z), colors=CONTOUR_COLOR, linewidths=0.7)
    for m in fn.minima:
        ax_c.plot(*m, "*", color="gold", ms=14, mec="black")
    for run in runs:
        c = COLORS[run.choice.name]
        pts = run.points[: k + 1]
        ax_c.plot(pts[:, 0], pts[:, 1], "-", color=c, lw=1.8, label=run.choice.label)
        ax_c.plot(pts[-1:, 0], pts[-1:, 1], "o", color=c, ms=6, mec="black")
        gap = np.maximum(run.losses[: k + 1] - fn.f_min, 1e-16)
        ax_l.plot(np.arange(len(gap)), gap, color=c, lw=1.8, label=run.choice.label)
    ax_c.set(xlim=fn.xlim, ylim=fn.ylim)
    ax_c.set_title(fn.name, fontsize=FONT + 1)
    ax_l.set(yscale="log", ylim=gap_limits(fn, runs),
             xlim=(0, max((len(r.losses) - 1 for r in runs), default=1)))
    ax_l.set_title("f(θ_k) − f*  (log scale)", fontsize=FONT + 1)
    ax_l.set_xlabel("step k", fontsize=FONT)
    for ax in (ax_c, ax_l):
        ax.tick_params(labelsize=FONT)
    if runs:
        ax_l.legend(fontsize=FONT - 1, loc="lower left")


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
        self._hold = False          # while the function changes, sliders move in bulk
        # sliders send their value when released, not on every pixel of a drag: each
        # value reruns the optimizers (0.1-0.5 s), a drag would queue dozens of reruns
        slow = {"continuous_update": False}
        self.function = W.Dropdown(options=list(FUNCTIONS), value=function, description="f")
        self.steps = W.IntSlider(value=steps, min=10, max=1000, step=10, description="steps",
                                 **slow)
        self.enabled = {n: W.Checkbox(value=n in optimizers, description=n, indent=False,
                                      layout=W.Layout(width="120px")) for n in OPTIMIZERS}
        self.lr = {n: W.FloatLogSlider(value=START_LR[function][n], base=10, min=-5, max=1,
                                       step=0.1, readout_format=".1e", description="lr",
                                       layout=W.Layout(width="320px"), **slow)
                   for n in OPTIMIZERS}
        self.hyper = {
            "momentum": W.FloatSlider(value=DEFAULTS["momentum"], min=0, max=0.99, step=0.01,
                                      description="momentum", **slow),
            "alpha": W.FloatSlider(value=DEFAULTS["alpha"], min=0.5, max=0.999, step=0.001,
                                   description="RMS α", readout_format=".3f", **slow),
            "beta1": W.FloatSlider(value=DEFAULTS["beta1"], min=0, max=0.99, step=0.01,
                                   description="Adam β₁", **slow),
            "beta2": W.FloatSlider(value=DEFAULTS["beta2"], min=0.5, max=0.9999, step=0.0001,
                                   description="Adam β₂", readout_format=".4f", **slow),
            "noise": W.FloatSlider(value=DEFAULTS["noise"], min=0, max=20, step=0.5,
                                   description="noise σ", **slow),
        }
        self.play = W.Play(value=steps, min=0, max=steps, step=max(steps // 100, 1),
                           interval=50, description="play")
        self.step_slider = W.IntSlider(value=steps, min=0, max=steps, description="step k")
        self.plot = LivePlot(self._panels(FUNCTIONS[function], []), height=420, interval=0.0)
        # the animation runs in the browser: Play moves the slider, the slider cuts the
        # paths in the plot, and the kernel only hears the final value
        W.jslink((self.play, "value"), (self.step_slider, "value"))
        W.jslink((self.step_slider, "value"), (self.plot, "k"))

        for w in [self.function, self.steps, *self.enabled.values(), *self.lr.values(),
                  *self.hyper.values()]:
            w.observe(self._on_change, "value")
        self.function.observe(self._on_function, "value")
        self.step_slider.observe(self._on_frame, "value")
        rows = [W.HBox([self.enabled[n], self.lr[n]]) for n in OPTIMIZERS]
        super().__init__([
            W.HBox([self.function, self.steps, self.play, self.step_slider]),
            W.HBox([W.VBox(rows), W.VBox(list(self.hyper.values()))]),
            self.plot,
        ])
        self.recompute()

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
        """Run every chosen optimizer again and send the full paths to the browser."""
        fn = FUNCTIONS[self.function.value]
        runs = [run_optimizer(fn, c, steps=self.steps.value, seed=self.seed)
                for c in self.choices()]
        self.runs = runs
        self.frame = self.steps.value
        for w in (self.play, self.step_slider):
            w.max = self.steps.value
        self.play.step = max(self.steps.value // 100, 1)
        self.step_slider.value = self.steps.value
        self._send_scene(fn, runs)

    def _panels(self, fn, runs) -> list[dict]:
        return [
            {"id": "f", "title": fn.name, "xlabel": "x", "xlim": list(fn.xlim),
             "ylim": list(fn.ylim), "weight": 1.2},
            {"id": "gap", "title": "f(θ_k) − f*  (log scale)", "xlabel": "step k",
             "ylog": True, "ylim": list(gap_limits(fn, runs)),
             "xlim": [0, max((len(r.losses) - 1 for r in runs), default=1)],
             "legend": "lower left"},
        ]

    def _send_scene(self, fn, runs) -> None:
        series = [{"id": "contours", "panel": "f", "color": CONTOUR_COLOR, "width": 0.8},
                  {"id": "minima", "panel": "f", "color": "gold", "mode": "points",
                   "size": 6}]
        data = {"contours": contour_polyline(fn),
                "minima": ([m[0] for m in fn.minima], [m[1] for m in fn.minima])}
        for run in runs:
            name, c = run.choice.name, COLORS[run.choice.name]
            series += [{"id": f"path:{name}", "panel": "f", "color": c, "width": 2,
                        "cut": True},
                       {"id": f"head:{name}", "source": f"path:{name}", "panel": "f",
                        "color": c, "mode": "head", "size": 4.5, "cut": True},
                       {"id": f"gap:{name}", "panel": "gap", "color": c, "width": 2,
                        "cut": True, "label": run.choice.label}]
            gap = np.maximum(run.losses - fn.f_min, 1e-16)
            data[f"path:{name}"] = (run.points[:, 0], run.points[:, 1])
            data[f"gap:{name}"] = (np.arange(len(gap)), gap)
        with self.plot.hold_sync():           # one message for panels, series and k
            self.plot.panels = self._panels(fn, runs)
            self.plot.series = series
            self.plot.k = self.step_slider.value
        self.plot.replace(data)

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
        self.frame = change["new"]

    # -- static output ----------------------------------------------------------------
    def figure(self, k: int | None = None):
        """A static matplotlib Figure of the paths up to step k (default: the slider's)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(12, 4.8), dpi=100)
        with DRAW_LOCK:
            draw_playground(fig, FUNCTIONS[self.function.value], self.runs,
                            self.frame if k is None else k)
        return fig

    def snapshot(self, k: int | None = None):
        """A static PNG of the paths up to step k (default: the full paths)."""
        from IPython.display import Image

        return Image(data=figure_png(self.figure(self.steps.value if k is None else k)))

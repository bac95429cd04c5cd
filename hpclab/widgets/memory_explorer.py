"""The memory explorer: what one GPU holds when training a transformer, and does it fit?

    from hpclab.widgets.memory_explorer import MemoryExplorer
    MemoryExplorer()                                  # Llama 3 8B, s = 4096, one GPU
    MemoryExplorer(preset="Llama 3 70B", dp=8, tp=8, sp=True, zero=1)

Pick a model (the course's tiny transformer up to Llama 3 405B), the sequence length s,
micro-batch b, precision, optimizer, activation recomputation, ZeRO stage, the data /
tensor / pipeline degrees N_d, t, p (with sequence parallelism), m micro-batches and
the pipeline schedule. One stacked bar per pipeline stage shows the bytes on one of its
ranks — parameters, gradients, optimizer state, activations — against a line at the
GPU's memory. The numbers are hpclab.memory's calculator (formulas and sources there);
the state lives in hpclab.memory.explorer.ExplorerState, usable without a browser.
`explorer.snapshot()` is a static PNG.
"""

from __future__ import annotations

import ipywidgets as W
from matplotlib.figure import Figure

from hpclab.memory.explorer import CHOICES, PARTS, ExplorerState, presets
from hpclab.widgets.figure import DRAW_LOCK, StaticFallback, figure_png

COLORS = dict(zip(PARTS, ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")))
FIGSIZE, DPI = (8, 3.6), 100
SEQS = [2 ** k for k in range(6, 18)]           # 64 ... 131072
POWERS = [2 ** k for k in range(11)]         # 1 ... 1024


def draw_bars(state: ExplorerState, ax) -> None:
    """Stacked bars per pipeline stage and the GPU's memory as a line."""
    ax.clear()
    bars = state.bars_gb()
    stages = range(state.pp)
    bottom = [0.0] * state.pp
    for part in PARTS:
        ax.bar(stages, bars[part], bottom=bottom, color=COLORS[part], label=part, width=0.7)
        bottom = [b + v for b, v in zip(bottom, bars[part])]
    ax.axhline(state.gpu_gb, color="black", ls="--", lw=1.2,
               label=f"GPU memory ({state.gpu_gb:g} GB)")
    ax.set(xlabel="pipeline stage (one rank of each)", ylabel="GB per GPU",
           ylim=(0, max(max(bottom), state.gpu_gb) * 1.15))
    ax.set_xticks(list(stages))
    ax.set_title(("fits" if state.fits else "does NOT fit") + f" on a {state.gpu_gb:g} GB "
                 f"GPU: fullest rank {state.peak_gb:.3g} GB",
                 color="black" if state.fits else "#b00000", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")


class MemoryExplorer(StaticFallback, W.VBox):
    def __init__(self, **settings):
        self.state = ExplorerState(**settings)
        self._hold = False
        st = self.state
        # one PNG per settings change: a click redraws a handful of bars, so a picture
        # drawn in the kernel is simpler than streaming them, and it is the snapshot too
        self.image = W.Image(format="png", layout=W.Layout(width=f"{FIGSIZE[0] * DPI}px"))
        dd = W.Dropdown
        self.controls = {
            "preset": dd(options=list(presets()), value=st.preset, description="model"),
            "seq": dd(options=sorted(set(SEQS) | {st.seq}), value=st.seq, description="s"),
            "micro_batch": dd(options=sorted(set(POWERS[:7]) | {st.micro_batch}),
                              value=st.micro_batch, description="b"),
            "precision": dd(options=CHOICES["precision"], value=st.precision,
                            description="precision"),
            "optimizer": dd(options=CHOICES["optimizer"], value=st.optimizer,
                            description="optimizer"),
            "recompute": W.ToggleButtons(options=CHOICES["recompute"], value=st.recompute,
                                         description="recompute"),
            "zero": W.ToggleButtons(options=CHOICES["zero"], value=st.zero, description="ZeRO"),
            "dp": dd(options=sorted(set(POWERS) | {st.dp}), value=st.dp, description="N_d"),
            "tp": dd(options=sorted(set(POWERS[:8]) | {st.tp}), value=st.tp, description="t"),
            "sp": W.Checkbox(value=st.sp, description="sequence parallel"),
            "pp": dd(options=sorted(set(POWERS[:7]) | {st.pp}), value=st.pp, description="p"),
            "microbatches": dd(options=sorted(set(POWERS[:8]) | {st.microbatches}),
                               value=st.microbatches, description="m"),
            "schedule": W.ToggleButtons(options=CHOICES["schedule"], value=st.schedule,
                                        description="schedule"),
            "gpu_gb": W.BoundedFloatText(value=st.gpu_gb, min=1, max=1024, step=1,
                                         description="GPU GB"),
        }
        for w in self.controls.values():
            w.style.description_width = "80px"
            w.observe(self._on_change, "value")
        self.message = W.HTML()
        c = self.controls
        super().__init__([
            W.HBox([W.VBox([c["preset"], c["seq"], c["micro_batch"], c["precision"],
                            c["optimizer"], c["gpu_gb"]]),
                    W.VBox([c["dp"], c["tp"], c["sp"], c["pp"], c["microbatches"]])]),
            c["recompute"], c["zero"], c["schedule"], self.message, self.image,
        ])
        self.refresh()

    def set(self, **changes) -> None:
        """Change settings from code (the controls follow)."""
        for name, value in changes.items():
            if name not in self.controls:
                raise ValueError(f"unknown setting {name!r}; choose from {list(self.controls)}")
            w = self.controls[name]
            if hasattr(w, "options") and value not in w.options:
                old, self._hold = w.value, True    # new options reset the value: not a choice
                try:
                    w.options = sorted(set(w.options) | {value})
                    w.value = old
                finally:
                    self._hold = False
            w.value = value

    def _on_change(self, change) -> None:
        if self._hold:
            return
        name = next(k for k, w in self.controls.items() if w is change["owner"])
        try:
            self.state.update(**{name: change["new"]})
        except ValueError as e:
            self._hold = True           # put the control back to the state's valid value
            try:
                change["owner"].value = getattr(self.state, name)
            finally:
                self._hold = False
            self.message.value = f"<span style='color:#b00000'>{e}</span>"
            return
        self.refresh()

    def refresh(self) -> None:
        self.message.value = self.state.summary()
        self.image.value = figure_png(self.figure())

    def figure(self) -> Figure:
        """The current bars as a plain matplotlib Figure."""
        fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
        with DRAW_LOCK:
            draw_bars(self.state, fig.add_subplot())
        return fig

    def snapshot(self):
        """A static PNG of the current bars."""
        from IPython.display import Image

        return Image(data=figure_png(self.figure()))

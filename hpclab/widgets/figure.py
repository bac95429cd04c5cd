"""Live matplotlib figures for widgets, with a static picture for headless runs.

Every hpclab widget draws into one `matplotlib.figure.Figure` shown through ipympl's
canvas widget. ipympl was chosen over bqplot and anywidget because (1) the widgets reuse
the course's plotting code unchanged (students already read matplotlib), (2)
`canvas.draw()` renders in the kernel and pushes one PNG diff to the page, so a
background thread can refresh a plot while a cell is still running, and (3) no
JavaScript is written by us.

    fig, canvas = live_figure(figsize=(9, 3))
    ax = fig.add_subplot()
    ... ax.plot(...) ...
    canvas.draw()                 # push the new picture to the browser (any thread)
    png = figure_png(fig)         # bytes, for headless output or a saved file

`StaticFallback` gives a widget a `_repr_mimebundle_` carrying a PNG and an <img> next
to the widget view (the same trick ipympl uses for its own canvas); with the environment
variable HPCLAB_WIDGETS=static the widget view is left out, so nbconvert, nbval and
exported HTML show only the picture. Every widget also has `snapshot()`, a static PNG
of its current state, for the last cell of a notebook.
"""

from __future__ import annotations

import base64
import io
import os
import sys
import threading

from matplotlib.figure import Figure

# matplotlib is not thread-safe: every draw of a widget figure takes this lock, so the
# renderer thread and a cell calling snapshot() never rasterise at the same time.
DRAW_LOCK = threading.RLock()


def live_figure(figsize=(9.0, 3.0), dpi: int = 72, layout: str | None = "constrained"):
    """A Figure and its ipympl canvas widget, outside pyplot's global figure registry.

    Pass layout=None for figures redrawn many times a second: constrained layout costs
    more than the drawing itself."""
    Canvas, FigureManager = _ipympl()

    fig = Figure(figsize=figsize, dpi=dpi, layout=layout)
    canvas = Canvas(fig)
    FigureManager(canvas, 0)  # ipympl pushes images through the manager's socket list
    canvas.header_visible = False
    canvas.footer_visible = False
    canvas.toolbar_visible = False
    canvas.resizable = False
    canvas.capture_scroll = False
    # Size the browser canvas now: ipympl would otherwise wait for a handshake that a busy
    # kernel (a cell still running) answers only later, leaving a 0x0 canvas meanwhile.
    canvas._size = (int(figsize[0] * dpi), int(figsize[1] * dpi))
    # ipympl re-encodes every frame as a PNG data URL until a browser says hello, for
    # headless embedding; StaticFallback covers that case once, so skip the per-frame cost.
    canvas.syncing_data_url = False
    return fig, canvas


def _ipympl():
    """Import ipympl without letting it switch pyplot's backend.

    `import ipympl` calls matplotlib.use("module://ipympl.backend_nbagg") when matplotlib
    is already imported; in a notebook that would turn every later plt figure into a
    widget (blank in exported HTML) and unhook IPython's inline PNG display. Its
    __init__ only does so `if "matplotlib" in sys.modules`, so hide it for that moment.
    """
    if "ipympl" not in sys.modules:
        saved = sys.modules.pop("matplotlib", None)
        try:
            import ipympl  # noqa: F401
        finally:
            if saved is not None:
                sys.modules["matplotlib"] = saved
    from ipympl.backend_nbagg import Canvas, FigureManager
    return Canvas, FigureManager


def static_only() -> bool:
    """HPCLAB_WIDGETS=static: widgets display as pictures only (CI, nbval, slides to PDF)."""
    return os.environ.get("HPCLAB_WIDGETS", "").lower() == "static"


def has_frontend(canvas) -> bool:
    """True once a browser has rendered this canvas (ipympl stops syncing its data URL)."""
    return not getattr(canvas, "syncing_data_url", True)


def figure_png(fig: Figure, dpi: int | None = None) -> bytes:
    with DRAW_LOCK:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi or fig.dpi)
    return buf.getvalue()


def draw(canvas) -> float:
    """Render `canvas` now and push it to the page; returns the seconds it took."""
    import time

    t0 = time.perf_counter()
    with DRAW_LOCK:
        canvas.draw()
    return time.perf_counter() - t0


class StaticFallback:
    """Mixin for a widget container: add a PNG of `self.fig` to its display bundle."""

    fig: Figure

    def _repr_mimebundle_(self, **kwargs):
        bundle = {} if static_only() else (super()._repr_mimebundle_(**kwargs) or {})
        png = base64.b64encode(figure_png(self.fig)).decode("ascii")
        bundle["image/png"] = png
        bundle["text/html"] = f"<img src='data:image/png;base64,{png}'/>"
        return bundle

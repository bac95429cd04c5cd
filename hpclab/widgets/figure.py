"""Static pictures of widgets: for exported HTML, slides, CI logs and headless runs.

The live views are drawn by the browser (liveplot.py) or pushed as whole PNG frames
(the all-reduce visualiser); every widget can also draw its current state into a plain
matplotlib Figure (`widget.figure()`), and

    png = figure_png(fig)         # bytes, for headless output or a saved file

`StaticFallback` gives a widget a `_repr_mimebundle_` carrying that PNG and an <img>
next to the widget view, so a notebook executed headless (nbmake, nbconvert) or exported
to HTML shows the picture where a browser would show the live widget; with the
environment variable HPCLAB_WIDGETS=static the widget view is left out altogether.
Every widget also has `snapshot()`, a static PNG of its current state, for the last
cell of a notebook.
"""

from __future__ import annotations

import base64
import io
import os
import threading

from matplotlib.figure import Figure

# matplotlib is not thread-safe: every draw of a widget figure takes this lock, so a
# drawing thread and a cell calling snapshot() never rasterise at the same time.
DRAW_LOCK = threading.RLock()


def static_only() -> bool:
    """HPCLAB_WIDGETS=static: widgets display as pictures only (CI, nbval, slides to PDF)."""
    return os.environ.get("HPCLAB_WIDGETS", "").lower() == "static"


def figure_png(fig: Figure, dpi: int | None = None) -> bytes:
    with DRAW_LOCK:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi or fig.dpi)
    return buf.getvalue()


class StaticFallback:
    """Mixin for a widget container: add a PNG of `self.figure()` to its display bundle."""

    def figure(self) -> Figure:
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs):
        bundle = {} if static_only() else (super()._repr_mimebundle_(**kwargs) or {})
        png = base64.b64encode(figure_png(self.figure())).decode("ascii")
        bundle["image/png"] = png
        bundle["text/html"] = f"<img src='data:image/png;base64,{png}'/>"
        return bundle

"""Live widgets for the course: the only part of hpclab that imports ipywidgets.

    from hpclab.widgets import Dashboard, OptimizerPlayground, AllReduceVisualiser, ClusterPanel
    from hpclab.widgets import MemoryExplorer

    Dashboard              loss / throughput / time split while a job trains (fit callback
                           or Job.subscribe), progress, ETA and a Stop button
    OptimizerPlayground    trajectories of several optimizers on a 2-D function, animated
    AllReduceVisualiser    ranks as boxes, chunks moving step by step from a real comm trace
    ClusterPanel           engines with host, device, memory, status, and a restart action
    MemoryExplorer         bytes per GPU by model, precision, recomputation, ZeRO, DP/TP/PP
                           (hpclab.memory), stacked per rank against the GPU's memory

The dashboard and the playground are drawn by the browser (liveplot.py + liveplot.js:
the kernel streams points, a canvas draws them); the visualiser shows matplotlib frames.
Each widget has a `snapshot()` giving a static matplotlib PNG (figure.py), so exported
HTML, slides, CI logs and headless runs show the picture.
"""

from importlib import import_module

_EXPORTS = {
    "Dashboard": "hpclab.widgets.dashboard",
    "DashboardState": "hpclab.widgets.dashboard_state",
    "OptimizerPlayground": "hpclab.widgets.playground",
    "AllReduceVisualiser": "hpclab.widgets.allreduce",
    "ClusterPanel": "hpclab.widgets.cluster_panel",
    "MemoryExplorer": "hpclab.widgets.memory_explorer",
}


def __getattr__(name):
    # Lazy: importing hpclab.widgets must not pull in ipywidgets until a widget is made.
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hpclab.widgets' has no attribute {name!r}")


__all__ = ["AllReduceVisualiser", "ClusterPanel", "Dashboard", "DashboardState",
           "MemoryExplorer", "OptimizerPlayground"]

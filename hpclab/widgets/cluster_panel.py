"""The cluster panel: one row per engine (host, device, memory, status) and a restart.

    from hpclab.widgets import ClusterPanel
    with hpclab.connect(n=2) as cluster:
        panel = ClusterPanel(cluster)
        panel                     # Refresh reads cluster.info(); Restart calls
                                  # cluster.restart() (fresh engines, fresh process group)

Status comes from the controller (idle, busy, dead) so the panel answers while the
engines train. Restart runs in a background thread (it takes seconds) and the panel
says what it is doing; an error is shown in the panel, not lost. In exported HTML and
CI the panel shows the same table as plain HTML (`panel.snapshot()`).
"""

from __future__ import annotations

import html
import threading

import ipywidgets as W

from hpclab.cluster.info import format_value

STATUS_COLORS = {"idle": "#2ca02c", "busy": "#ff7f0e", "dead": "#d62728"}
COLUMNS = [("rank", "rank"), ("host", "host"), ("pid", "pid"), ("device", "device"),
           ("cpus", "CPUs"), ("mem_total_gb", "memory (GB)"), ("rss_gb", "used (GB)"),
           ("gpus", "GPUs"), ("status", "status")]


def status_word(status) -> str:
    """'busy (1 queued)' -> 'busy'; anything unknown stays as it is."""
    return str(status).split(" ", 1)[0] if status else "?"


def info_table(rows) -> str:
    """cluster.info() rows as an HTML table with a coloured status badge."""
    head = "".join(f"<th style='padding:2px 8px'>{html.escape(t)}</th>" for _, t in COLUMNS)
    body = []
    for row in rows:
        cells = []
        for key, _ in COLUMNS:
            text = html.escape(format_value(row.get(key)))
            if key == "status":
                color = STATUS_COLORS.get(status_word(row.get(key)), "#7f7f7f")
                text = (f"<span style='background:{color};color:white;border-radius:4px;"
                        f"padding:1px 6px'>{text}</span>")
            cells.append(f"<td style='padding:2px 8px'>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class ClusterPanel(W.VBox):
    def __init__(self, cluster, timeout: float = 5.0):
        self.cluster, self.timeout = cluster, timeout
        self.rows: list[dict] = []
        self.table = W.HTML()
        self.message = W.HTML()
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.restart_button = W.Button(description="Restart engines", icon="power-off",
                                       button_style="warning")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.restart_button.on_click(lambda _: self.restart())
        self._thread: threading.Thread | None = None
        super().__init__([W.HBox([self.refresh_button, self.restart_button, self.message]),
                          self.table])
        self.refresh()

    def refresh(self) -> list[dict]:
        """Read cluster.info() again and redraw the table; returns the rows."""
        try:
            self.rows = [dict(r) for r in self.cluster.info(timeout=self.timeout)]
        except Exception as exc:  # noqa: BLE001 -- a closed or broken cluster: say so here
            self.message.value = f"<span style='color:#d62728'>{html.escape(str(exc))}</span>"
            return self.rows
        self.table.value = info_table(self.rows)
        counts = {}
        for row in self.rows:
            word = status_word(row.get("status"))
            counts[word] = counts.get(word, 0) + 1
        self.message.value = " · ".join(f"{n} {w}" for w, n in sorted(counts.items()))
        return self.rows

    def statuses(self) -> list[str]:
        return [status_word(r.get("status")) for r in self.rows]

    def restart(self, wait: bool = False) -> None:
        """cluster.restart() in a background thread; wait=True blocks until it is done."""
        if self._thread is not None and self._thread.is_alive():
            return
        self.restart_button.disabled = True
        self.message.value = "restarting engines…"
        self._thread = threading.Thread(target=self._restart, name="hpclab-restart",
                                        daemon=True)
        self._thread.start()
        if wait:
            self._thread.join(self.cluster.timeout + 30)

    def _restart(self) -> None:
        try:
            self.cluster.restart()
        except Exception as exc:  # noqa: BLE001 -- shown in the panel, not lost in a thread
            self.message.value = ("<span style='color:#d62728'>restart failed: "
                                  f"{html.escape(str(exc))}</span>")
        else:
            self.refresh()
            self.message.value = "restarted · " + self.message.value
        finally:
            self.restart_button.disabled = False

    def snapshot(self):
        """The table as plain HTML (exported HTML, CI logs)."""
        from IPython.display import HTML

        return HTML(info_table(self.rows))

    def _repr_mimebundle_(self, **kwargs):
        from hpclab.widgets.figure import static_only

        bundle = {} if static_only() else (super()._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = repr(self.cluster)
        bundle["text/html"] = info_table(self.rows)
        return bundle

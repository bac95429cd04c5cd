"""`cluster.info()`: a table of the ranks you are connected to.

A list of dicts (one row per rank) that prints as a text table in a terminal and as an
HTML table in a notebook:

    rank  host  pid    device  cpus  mem_total_gb  rss_gb  gpus  torch  status
    0     vm    8179   cpu     2     31.3          0.31    -     2.13   idle
    1     vm    8180   cpu     2     31.3          0.31    -     2.13   busy (1 queued)

`status` comes from the controller (idle, busy, dead), so info() answers even while the
ranks are busy; memory figures of busy ranks are shown as "?".
"""

from __future__ import annotations

import html
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from ipyparallel.error import KernelError

from hpclab.cluster import engine

COLUMNS = ["rank", "host", "pid", "device", "cpus", "mem_total_gb", "rss_gb", "gpus",
           "torch", "status"]


def format_value(value) -> str:
    """One table cell: ? for unknown, 2 decimals for floats, lists comma-separated."""
    if value is None:
        return "?"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "-"
    return str(value)


class ClusterInfo(list):
    """Rows (dicts) by rank, with text and HTML renderings."""

    def column(self, name: str) -> list:
        return [row.get(name) for row in self]

    def _cells(self) -> list[list[str]]:
        return [[format_value(row.get(c)) for c in COLUMNS] for row in self]

    def __repr__(self) -> str:
        cells = self._cells()
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(COLUMNS)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
        return "\n".join(lines)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>"
                       for r in self._cells())
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def gather_info(client, ranks, facts: list[dict], timeout: float = 5.0) -> ClusterInfo:
    """Build the table: static facts from connect, status from the controller, memory live."""
    alive = set(client.ids)
    pool = ThreadPoolExecutor(1)
    try:   # the controller may be the thing that is stuck: ask it with a time limit
        queues = pool.submit(client.queue_status).result(timeout)
    except FutureTimeout:
        queues = {}
    finally:
        pool.shutdown(wait=False)
    idle = [m for m in ranks if m.engine_id in alive
            and not queues.get(m.engine_id, {}).get("queue")]
    live = {}
    if idle:   # one call over the idle ranks; a rank too busy to answer shows "?"
        ar = client[[m.engine_id for m in idle]].apply_async(engine.status)
        ar.wait(timeout)
        parts = ar.split()   # with one engine: the call itself, a list of one result
        for m, part in zip(idle, parts):
            try:
                live[m.rank] = part.get(0)[0] if len(parts) == 1 else part.get(0)
            except (KernelError, TimeoutError):
                live[m.rank] = {}
    rows = ClusterInfo()
    for m, f in zip(ranks, facts):
        queued = queues.get(m.engine_id, {}).get("queue", 0)
        status = ("dead" if m.engine_id not in alive else
                  f"busy ({queued} queued)" if queued else "idle")
        rows.append({"rank": m.rank, "host": m.host, "pid": m.pid, "device": f["device"],
                     "cpus": f["cpus"], "mem_total_gb": f["mem_total_gb"],
                     "rss_gb": live.get(m.rank, {}).get("rss_gb"), "gpus": f["gpus"],
                     "torch": f["torch"], "status": status})
    return rows

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

COLUMNS = ["rank", "host", "pid", "device", "cpus", "mem_total_gb", "rss_gb", "gpus",
           "torch", "status"]


def _fmt(value) -> str:
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
        return [[_fmt(row.get(c)) for c in COLUMNS] for row in self]

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

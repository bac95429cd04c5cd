"""End to end: JupyterLab in Chromium runs the live-dashboard demo, and the plot grows.

Opens notebooks/demos/live_dashboard.ipynb in a real JupyterLab, runs all cells, then
watches the dashboard while the job trains: the "points" box (points on the loss plot)
and a hash of the ipympl canvas must change several times, with the number of points
strictly increasing, before training finishes. Screenshots are saved along the way.
"""

from __future__ import annotations

import hashlib
import time

import pytest

pytestmark = [pytest.mark.unit_d, pytest.mark.browser, pytest.mark.cluster]
NOTEBOOKS = ["notebooks/demos/live_dashboard.ipynb"]

POINTS = ".widget-text input[type='number']"
CANVAS = ".jupyter-matplotlib-canvas-div canvas"


def _canvas_hash(page) -> str:
    data = page.eval_on_selector(CANVAS, "c => c.toDataURL()")
    return hashlib.sha1(data.encode()).hexdigest()[:12]


def test_live_dashboard_grows_while_training(lab, page, artifacts):
    try:
        _run_and_watch(lab, page, artifacts)
    finally:
        page.screenshot(path=artifacts / "dashboard-last.png", full_page=True)


def _run_and_watch(lab, page, artifacts):
    page.goto(lab.open_url("live_dashboard.ipynb"))
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    # a fresh notebook may first ask which kernel to use
    dialog = page.locator(".jp-Dialog .jp-mod-accept")
    try:
        dialog.wait_for(timeout=5_000)
        dialog.click()
    except Exception:
        pass
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=90_000)
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")

    page.wait_for_selector(CANVAS, state="attached", timeout=120_000)
    page.screenshot(path=artifacts / "dashboard-start.png", full_page=True)

    seen = []            # (seconds, points, canvas hash) whenever something changed
    t0 = time.monotonic()
    while time.monotonic() - t0 < 180:
        points = int(page.input_value(POINTS) or 0)
        h = _canvas_hash(page)
        if not seen or (points, h) != seen[-1][1:]:
            seen.append((round(time.monotonic() - t0, 2), points, h))
            if len(seen) in (3, 6):
                page.screenshot(path=artifacts / f"dashboard-{len(seen)}.png", full_page=True)
        if page.locator("button:has-text('done')").count():
            break
        time.sleep(0.2)
    page.screenshot(path=artifacts / "dashboard-end.png", full_page=True)
    print("observed (s, points, canvas hash):", seen)

    counts = [p for _, p, _ in seen]
    assert len(seen) >= 4, f"the dashboard changed only {len(seen)} times: {seen}"
    assert counts == sorted(counts) and len(set(counts)) >= 4, \
        f"points on the plot did not keep increasing while training ran: {counts}"
    assert len({h for _, _, h in seen}) >= 4, f"the canvas was redrawn too rarely: {seen}"
    # the last cell's static snapshot is an <img> in the output area
    page.wait_for_selector(".jp-OutputArea-output img", timeout=120_000)

"""End to end: the optimizer playground and the all-reduce visualiser animate in Chromium.

Opens notebooks/demos/widgets_tour.ipynb in JupyterLab, runs every cell, then presses the
visualiser's "step ▶" and the playground's Play: both ipympl canvases (hashed) must
change, and the static snapshots must appear as images.
"""

from __future__ import annotations

import hashlib
import time

import pytest

pytestmark = [pytest.mark.unit_b, pytest.mark.unit_c, pytest.mark.browser,
              pytest.mark.cluster]
NOTEBOOKS = ["notebooks/demos/widgets_tour.ipynb"]
CANVASES = ".jupyter-matplotlib-canvas-div canvas:first-child"


def _hashes(page) -> list[str]:
    urls = page.eval_on_selector_all(CANVASES, "cs => cs.map(c => c.toDataURL())")
    return [hashlib.sha1(u.encode()).hexdigest()[:12] for u in urls]


def _run_every_cell(page) -> None:
    """Select each cell by its prompt and Shift+Enter it, as a student would (the runs
    queue in the kernel; markdown cells just render)."""
    cells = page.locator(".jp-Notebook .jp-Cell")
    for i in range(cells.count()):
        cells.nth(i).locator(".jp-InputPrompt").click()
        page.keyboard.press("Shift+Enter")
        time.sleep(0.3)


def test_playground_and_visualiser_animate(lab, page, artifacts):
    try:
        page.goto(lab.open_url("widgets_tour.ipynb"))
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                               timeout=120_000)
        _run_every_cell(page)
        page.wait_for_function("document.querySelectorAll("
                               "'.jupyter-matplotlib-canvas-div').length >= 2",
                               timeout=180_000)
        page.wait_for_selector(".jp-OutputArea-output img", timeout=180_000)  # snapshots
        time.sleep(3)
        before = _hashes(page)
        page.screenshot(path=artifacts / "tour-before.png", full_page=True)
        page.locator("button:has-text('step ▶')").click()
        page.locator(".widget-play button").first.click()          # the playground's ▶
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            after = _hashes(page)
            if all(a != b for a, b in zip(before, after)):
                break
            time.sleep(0.5)
        print("canvas hashes before/after:", before, after)
        assert len(before) == 2 and all(a != b for a, b in zip(before, after)), \
            "pressing Play / step did not redraw both canvases"
    finally:
        page.screenshot(path=artifacts / "tour-after.png", full_page=True)

"""The playground (lecture B0) and the all-reduce visualiser show their data in a browser.

In JupyterLab 4 and in Notebook 7 (headless Chromium, 1400 px wide), as a lecturer would:

1. B0, every cell run in order: the playground's picture has two axes boxes, grey
   contours in the left one, every enabled optimizer's colour in both, and the curves
   f(θ_k) − f* reach the right end of their box (k = all steps);
2. the step slider set to k = STEPS/10 (typed into its readout): the curves now reach a
   tenth of the box; a checkbox ticked (Adagrad): its colour appears in both boxes;
3. widgets_tour, every cell run: the visualiser's picture shows the per-step cost bars
   with the current step highlighted (orange) at bar 1 of 6 (ring, 4 ranks); after
   "step ▶" twice, at bar 3.

The pictures are read as element screenshots (the `pixels` fixture): what is on the
screen, whoever drew it. Screenshots of each stage go to the artifacts folder.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = [pytest.mark.unit_b, pytest.mark.browser, pytest.mark.slow]
NOTEBOOKS = ["notebooks/lectures/B0_optimizer_playground.ipynb",
             "notebooks/demos/widgets_tour.ipynb"]
# the live plot of each widget; an ipympl canvas matches too, so the checks judge any
# way of drawing it
PLAYGROUND_PLOT = "canvas.hpclab-liveplot, .jupyter-matplotlib-canvas-div canvas"
VISUALISER_PLOT = ".widget-image, .jupyter-matplotlib-canvas-div canvas"
B0_STEPS = 300
B0_COLOURS = {"momentum": "#1f77b4", "Nesterov": "#17becf", "RMSprop": "#2ca02c",
              "Adam": "#d62728"}
ADAGRAD = "#9467bd"
RING_STEPS = 6                     # ring all-reduce on 4 ranks: 2 (p − 1) steps
SETTLE = 2.0                       # s for a change to reach the screen on a busy machine


def _grey(pix) -> np.ndarray:
    rgb = pix.rgb
    return ((rgb.max(axis=2) - rgb.min(axis=2)) < 14) & (rgb.mean(axis=2) > 120) & \
        (rgb.mean(axis=2) < 215)


def _run_all(lab, page) -> None:
    lab.run_cells(page, range(page.locator(".jp-Notebook .jp-Cell").count()))
    lab.wait_idle(timeout=240)
    time.sleep(SETTLE)


def _check_playground(pix, colours, k_fraction, where):
    boxes = pix.boxes()
    assert len(boxes) >= 2, f"{where}: the playground shows {len(boxes)} axes boxes, not 2"
    contour, gap = boxes[0], boxes[1]
    area = (contour[2] - contour[0]) * (contour[3] - contour[1])
    assert pix.count(_grey(pix), contour) > 0.004 * area, f"{where}: no contours"
    # paths cut at a small k are short and lie on top of each other near the start:
    # then only their colours together are counted there
    boxes = (("f − f*", gap),) if k_fraction < 1 else (("paths", contour), ("f − f*", gap))
    for name, colour in colours.items():
        for label, box in boxes:
            n = pix.count(pix.mask(colour), box)
            assert n >= 25, f"{where}: {name}'s colour {colour} missing in {label} ({n} px)"
    n = pix.count(pix.coloured(), contour)
    assert n >= 40, f"{where}: no paths in the contour box ({n} coloured px)"
    reach = pix.reach(pix.without_legend(pix.coloured(), gap), gap)
    assert abs(reach - k_fraction) < 0.06, \
        f"{where}: the curves reach {reach:.2f} of the box, expected {k_fraction:.2f}"


def _set_readout(page, description: str, value) -> None:
    slider = page.locator(".widget-slider", has=page.locator(".widget-label",
                                                               has_text=description)).first
    readout = slider.locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")


def _highlighted_bar(pix) -> float:
    """Which cost bar is orange, in bars from the left (0.5: the middle of the first).
    The cost panel is the right part of the picture (the ranks are drawn left)."""
    right = pix.rgb.shape[1] // 2
    bars = (pix.mask("#9db4d6", tol=25) | pix.mask("#dd8452", tol=25))[:, right:]
    cols = np.flatnonzero(bars.sum(axis=0) > 10)
    orange = np.flatnonzero(pix.mask("#dd8452", tol=25)[:, right:].sum(axis=0) > 10)
    assert len(cols) and len(orange), "no cost bars, or none highlighted"
    width = (cols[-1] - cols[0] + 1) / RING_STEPS
    return (orange.mean() - cols[0]) / width


@pytest.mark.parametrize("frontend", ["lab", "notebook"])
def test_playground_and_visualiser_show_their_data(lab, page, artifacts, pixels, frontend):
    try:
        lab.open(page, "B0_optimizer_playground.ipynb", frontend)
        _run_all(lab, page)
        plot = page.locator(PLAYGROUND_PLOT).first
        plot.scroll_into_view_if_needed()
        page.screenshot(path=artifacts / f"{frontend}-playground-run-all.png")
        _check_playground(pixels.of(plot, artifacts / f"{frontend}-pg-1.png"), B0_COLOURS, 1.0,
                          "after Run All")

        _set_readout(page, "step k", B0_STEPS // 10)
        lab.wait_idle()
        time.sleep(SETTLE)
        page.screenshot(path=artifacts / f"{frontend}-playground-step-k.png")
        _check_playground(pixels.of(plot, artifacts / f"{frontend}-pg-2.png"), B0_COLOURS, 0.1,
                          "after k = 30")

        page.locator(".widget-checkbox", has_text="Adagrad").locator("input").click()
        lab.wait_idle()
        time.sleep(SETTLE)
        page.screenshot(path=artifacts / f"{frontend}-playground-adagrad.png")
        _check_playground(pixels.of(plot, artifacts / f"{frontend}-pg-3.png"),
                          dict(B0_COLOURS, Adagrad=ADAGRAD), 1.0,
                          "after ticking Adagrad")

        lab.shutdown_kernels()
        lab.open(page, "widgets_tour.ipynb", frontend)
        _run_all(lab, page)
        viz = page.locator(VISUALISER_PLOT).last
        viz.scroll_into_view_if_needed()
        page.screenshot(path=artifacts / f"{frontend}-visualiser.png")
        bar = _highlighted_bar(pixels.of(viz, artifacts / f"{frontend}-viz-1.png"))
        assert abs(bar - 0.5) < 0.3, f"step 1 should be highlighted, bar {bar:.2f}"
        forward = page.locator("button", has_text="step ▶").last
        for _ in range(2):
            forward.click()
            time.sleep(0.3)
        lab.wait_idle()
        time.sleep(SETTLE)
        page.screenshot(path=artifacts / f"{frontend}-visualiser-step3.png")
        bar = _highlighted_bar(pixels.of(viz, artifacts / f"{frontend}-viz-2.png"))
        assert abs(bar - 2.5) < 0.3, f"step 3 should be highlighted, bar {bar:.2f}"
    finally:
        page.screenshot(path=artifacts / f"{frontend}-widgets-last.png", full_page=True)

"""The memory explorer (lecture D5) shows the calculator's numbers in a browser.

In JupyterLab 4 (headless Chromium), as a student would: a notebook that displays
`MemoryExplorer(preset="Llama 3 8B", seq=4096)`, its cell run, then the controls
clicked: N_d = 8 in its dropdown (plain data parallelism: the same bytes per GPU), ZeRO
stage 1, ZeRO stage 3. After each change the test reads what is on the screen:

* the summary line equals `ExplorerState(...).summary()` for the same settings (the
  fullest rank's GB and "fits" / "does NOT fit" on an 80 GB GPU);
* the picture (an element screenshot): the dashed GPU line at 80 GB and the axes' bottom
  give the scale in GB per pixel, and the height of each colour of the stacked bar —
  parameters, gradients, optimizer, activations — is the calculator's part in GB.

A widget that kept the old picture, or drew none, fails the bar heights.
"""

from __future__ import annotations

import time

import nbformat
import numpy as np
import pytest

from hpclab.memory.explorer import GB, ExplorerState
from hpclab.widgets.memory_explorer import COLORS

pytestmark = [pytest.mark.unit_d, pytest.mark.browser, pytest.mark.slow]
NOTEBOOK = "memory_explorer.ipynb"
START = {"preset": "Llama 3 8B", "seq": 4096}
SETTLE = 2.0                       # s for a change to reach the screen on a busy machine
BAND = (0.15, 0.35)                # columns of the picture read: inside the bar, left of
                                   # the legend (upper right)


def _write_notebook(folder) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from hpclab.widgets.memory_explorer import MemoryExplorer\n"
        f"explorer = MemoryExplorer(**{START!r})\n"
        "explorer")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, folder / NOTEBOOK)


def _heights(pix) -> tuple[dict[str, int], float]:
    """Pixel height of each part's colour in the bar, and the GB one pixel stands for
    (from the axes' bottom line and the dashed GPU line)."""
    w = pix.rgb.shape[1]
    band = slice(int(BAND[0] * w), int(BAND[1] * w))
    dark = (pix.rgb[:, band].max(axis=2) < 90).mean(axis=1)
    solid = np.flatnonzero(dark > 0.95)               # the axes' top and bottom lines
    dashed = np.flatnonzero((dark > 0.3) & (dark < 0.9))
    assert len(solid) >= 2 and len(dashed), "no axes or no dashed GPU line in the picture"
    bottom = solid[-1]
    gpu_row = dashed[(dashed > solid[0]) & (dashed < bottom)].mean()
    heights = {part: int(np.median(pix.mask(colour)[:, band].sum(axis=0)))
               for part, colour in COLORS.items()}
    return heights, 80.0 / (bottom - gpu_row)


def _check(page, lab, pixels, artifacts, settings: dict, name: str) -> None:
    lab.wait_idle()
    time.sleep(SETTLE)
    state = ExplorerState(**START).update(**settings)
    summary = page.locator(".widget-html", has_text="fullest rank").first.inner_text()
    assert summary.strip() == state.summary(), f"{name}: the summary line is stale or wrong"
    image = page.locator(".widget-image").first
    heights, gb_per_px = _heights(pixels.of(image, artifacts / f"explorer-{name}.png"))
    parts = state.ranks()[0].parts()
    for part, px in heights.items():
        want = parts[part] / GB / gb_per_px
        assert abs(px - want) <= 2 + 0.03 * want, \
            (f"{name}: the {part} bar is {px} px ({px * gb_per_px:.1f} GB), the calculator "
             f"says {parts[part] / GB:.1f} GB ({want:.0f} px)")


def test_explorer_bars_follow_the_controls(lab, page, artifacts, pixels):
    _write_notebook(lab.root)
    try:
        lab.open(page, NOTEBOOK)
        lab.run_cells(page, [0])
        page.locator(".widget-image").first.wait_for(timeout=120_000)
        _check(page, lab, pixels, artifacts, {}, "1-one-gpu")            # 152 GB: no

        page.locator(".widget-dropdown", has=page.locator(".widget-label", has_text="N_d")
                     ).locator("select").select_option("8")
        _check(page, lab, pixels, artifacts, {"dp": 8}, "2-dp8")          # DP: the same

        zero = page.locator(".widget-toggle-buttons",
                            has=page.locator(".widget-label", has_text="ZeRO"))
        zero.locator("button", has_text="1").click()
        _check(page, lab, pixels, artifacts, {"dp": 8, "zero": 1}, "3-zero1")   # 67.6 GB
        zero.locator("button", has_text="3").click()
        _check(page, lab, pixels, artifacts, {"dp": 8, "zero": 3}, "4-zero3")   # 39.5 GB
    finally:
        page.screenshot(path=artifacts / "explorer-last.png", full_page=True)

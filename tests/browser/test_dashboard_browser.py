"""End to end: a browser shows the live dashboard of a job training on 2 engines.

Opens notebooks/demos/live_dashboard.ipynb (STEPS set by the test) in JupyterLab 4 and
in Notebook 7 (headless Chromium, 1400 px wide) and runs it cell by cell as a student:

1. the cells up to the dashboard: 2 ipyparallel engines start and the job begins;
2. while the job trains, several times: the dashboard's picture has its three axes boxes,
   and the per-rank colours in the loss and the throughput boxes reach as far to the
   right as the steps received say (the x axis spans the whole run: step s sits at
   s / (1.02·STEPS) of the box), read off an element screenshot: what is on the
   screen, not what the kernel meant to send; the time-split box holds its bars; the
   MFU readout above the plot (the Trainer's records carry the model FLOPs utilisation)
   shows a percentage between 0 and 100;
3. the next cell runs while training continues (the kernel is not blocked);
4. JupyterLab: the job runs to its end; the picture reaches the right end and the status
   says "done". Notebook 7: Stop ends the job early; the picture freezes where the
   points stop and the status says "stopped"; then the static snapshot appears.

The browser's own measure of the latency, from each step's end to the animation frame
that drew its point (`canvas.hpclab.latencies`), is printed (p50 / p95), as are the
pictures' checks. Screenshots of each stage go to the artifacts folder.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time

import pytest

pytestmark = [pytest.mark.unit_d, pytest.mark.browser, pytest.mark.cluster, pytest.mark.slow]
NOTEBOOKS = ["notebooks/demos/live_dashboard.ipynb"]
STEPS = {"lab": 1500, "notebook": 3000}    # notebook: Stop ends it before
RANKS = 2
XSPAN = 1.02                                # the x axis: 0 .. 1.02·STEPS
TOL = 0.05                                  # of the box width: a line's width, a frame

POINTS = ".widget-text input[type='number']"
# the live plot: hpclab's canvas; an ipympl canvas matches too, so the checks judge
# any way of drawing it
PLOT = "canvas.hpclab-liveplot, .jupyter-matplotlib-canvas-div canvas"
STOP = ".jupyter-widgets.widget-button.mod-danger"
MFU = ".hpclab-liveplot-readout[data-key='mfu']"
MFU_TEXT = re.compile(r"MFU (\d+(?:\.\d+)?(?:e[-+]?\d+)?) %")
KERNEL_MFU = 'print(f"kernel MFU {100 * dash.plot.value(\'mfu\'):.6g} %")'


def _points(page) -> int:
    return int(page.input_value(POINTS) or 0)


def _prepare(root, steps: int) -> tuple[int, int]:
    """Set STEPS in the copied notebook and append a cell printing the kernel's MFU;
    return the indices of the dashboard cell and of that cell."""
    path = root / "live_dashboard.ipynb"
    nb = json.loads(path.read_text())
    params = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    params["source"] = "".join(params["source"]) + f"\nSTEPS = {steps}  # set by the test\n"
    nb["cells"].append({"cell_type": "code", "metadata": {}, "execution_count": None,
                        "outputs": [], "source": KERNEL_MFU})
    path.write_text(json.dumps(nb))
    dash = next(i for i, c in enumerate(nb["cells"]) if "Dashboard.for_job" in "".join(c["source"]))
    return dash, len(nb["cells"]) - 1


def _mfu(page, where: str) -> float:
    """The MFU the page shows above the plot, in percent."""
    text = page.text_content(MFU) or ""
    match = MFU_TEXT.fullmatch(text.strip())
    assert match, f"{where}: the MFU readout says {text!r}, not 'MFU x %'"
    value = float(match.group(1))
    assert 0 < value <= 100, f"{where}: MFU {value} % is not in (0, 100]"
    return value


def _check_picture(page, pixels, steps: int, where: str) -> tuple[float, float]:
    """The picture against the points before and after taking it; returns the reach."""
    before = _points(page)
    pix = pixels.of(page.locator(PLOT).first)
    after = _points(page)
    boxes = pix.boxes()
    assert len(boxes) >= 3, f"{where}: {len(boxes)} axes boxes on the dashboard, not 3"
    lo = max(before / RANKS / (XSPAN * steps) - TOL, 0.005 if before else 0.0)
    hi = after / RANKS / (XSPAN * steps) + TOL
    reaches = []
    for name, box in (("loss", boxes[0]), ("throughput", boxes[1])):
        reach = pix.reach(pix.without_legend(pix.coloured(), box), box)
        reaches.append(reach)
        assert lo <= reach <= hi, (f"{where}: the {name} lines reach {reach:.3f} of the "
                                   f"box; {before}..{after} points say {lo + TOL:.3f}.."
                                   f"{hi - TOL:.3f}")
    assert pix.count(pix.coloured(), boxes[2]) > 200, f"{where}: no time-split bars"
    print(f"{where}: points {before}..{after}, reach loss {reaches[0]:.3f}, "
          f"throughput {reaches[1]:.3f}")
    return tuple(reaches)


@pytest.mark.parametrize("frontend", ["lab", "notebook"])
def test_live_dashboard_on_two_engines(lab, page, artifacts, pixels, frontend):
    steps = STEPS[frontend]
    dash_cell, mfu_cell = _prepare(lab.root, steps)
    try:
        _run_and_watch(lab, page, artifacts, pixels, frontend, steps, dash_cell, mfu_cell)
    finally:
        page.screenshot(path=artifacts / f"{frontend}-dashboard-last.png", full_page=True)


def _run_and_watch(lab, page, artifacts, pixels, frontend, steps, dash_cell, mfu_cell):
    lab.open(page, "live_dashboard.ipynb", frontend)
    lab.run_cells(page, range(dash_cell + 1))
    page.wait_for_selector(PLOT, state="attached", timeout=180_000)
    page.wait_for_function(f"document.querySelector(\"{POINTS}\") && "
                           f"+document.querySelector(\"{POINTS}\").value > 0", timeout=180_000)
    page.locator(PLOT).first.scroll_into_view_if_needed()
    page.screenshot(path=artifacts / f"{frontend}-dashboard-training.png")

    # 2. while training: the picture holds the data so far, three times
    seen = []
    deadline = time.monotonic() + 120
    while len(seen) < 3 and time.monotonic() < deadline:
        if _points(page) >= RANKS * steps:
            break
        time.sleep(1.5)
        where = f"training, look {len(seen) + 1}"
        seen.append(_check_picture(page, pixels, steps, where))
        print(f"{where}: MFU {_mfu(page, where)} %")
    assert len(seen) >= 2, f"the job ended before two looks at the picture: {seen}"

    # 3. the kernel is free: the next cell prints while the job still trains
    lab.run_cells(page, [dash_cell + 2])
    page.wait_for_selector("text=/the job is at step \\d+ of \\d+/", timeout=60_000)

    if frontend == "lab":
        # 4a. to the end: the whole run on the picture, and a clear "done"
        page.wait_for_selector("text=✔ done", timeout=300_000)
        time.sleep(1.0)
        reach = _check_picture(page, pixels, steps, "done")
        assert min(reach) > 1 / XSPAN - TOL
        page.screenshot(path=artifacts / f"{frontend}-dashboard-done.png")
    else:
        # 4b. Stop ends the job early; the points and the picture freeze
        page.click(STOP)
        page.wait_for_selector("button:has-text('stopping')", timeout=30_000)
        deadline, last, still = time.monotonic() + 60, -1, 0
        while time.monotonic() < deadline and still < 6:     # unchanged for ~3 s
            now = _points(page)
            still, last = (still + 1, now) if now == last else (0, now)
            time.sleep(0.5)
        assert still >= 6, f"points still changing 60 s after Stop (last {last})"
        assert last < RANKS * steps, f"the job ran to the end despite Stop: {last} points"
        _check_picture(page, pixels, steps, "stopped")
    latencies = page.eval_on_selector(PLOT, "c => c.hpclab ? c.hpclab.latencies : []")
    if latencies:
        q = statistics.quantiles(latencies, n=20)
        print(f"{frontend}: step end -> on screen, {len(latencies)} steps: "
              f"p50 {statistics.median(latencies):.3f} s, p95 {q[18]:.3f} s")

    lab.run_cells(page, [dash_cell + 4])                 # job.wait(); dash.finish(); snapshot
    page.wait_for_selector(".jp-OutputArea-output img", timeout=120_000)
    word = "done" if frontend == "lab" else "stopped"
    page.wait_for_selector(f"button:has-text('{word}')", timeout=30_000)
    if frontend == "notebook":
        page.wait_for_selector("text=■ stopped", timeout=30_000)
    page.locator(".jp-OutputArea-output img").last.scroll_into_view_if_needed()
    page.screenshot(path=artifacts / f"{frontend}-dashboard-final.png")
    lab.run_cells(page, [dash_cell + 5])                 # cluster.close()
    lab.wait_idle(timeout=120)
    shown = _mfu(page, "the end")
    lab.run_cells(page, [mfu_cell])
    printed = page.wait_for_selector("text=/kernel MFU [-+.e0-9]+ %/", timeout=60_000)
    kernel = float(re.search(r"kernel MFU ([-+.e0-9]+) %", printed.text_content()).group(1))
    # the page rounds to 3 significant digits: half a unit of the third
    assert abs(shown - kernel) <= 0.5 * 10 ** (math.floor(math.log10(kernel)) - 2) + 1e-12, \
        f"the page shows MFU {shown} %, the kernel holds {kernel} %"
    print(f"{frontend}: MFU on the page {shown} %, in the kernel {kernel} %")

"""A throw-away Jupyter server and a headless Debian Chromium for the browser tests.

`lab` starts `jupyter lab` on a free port in a temporary root holding copies of the
notebooks the test module lists in `NOTEBOOKS` (paths from the repository root), with
its own JUPYTER_CONFIG_DIR, JUPYTER_RUNTIME_DIR, IPYTHONDIR, MPLCONFIGDIR and lab
settings (the "news" toast switched off), and stops the server and its kernels
afterwards. The same server serves JupyterLab 4 (/lab) and Notebook 7 (/notebooks):
`lab.open(page, name, frontend)` opens a notebook in either. `page` is a Playwright page
in Debian's `chromium` (Playwright cannot download its own browser here), 1400 px wide.
Screenshots go to $HPCLAB_ARTIFACTS, or to the test's tmp dir; the path is printed.

`Pixels` reads a widget's picture the way a viewer sees it (an element screenshot):
the axes boxes (long dark straight lines), the legend (a light grey frame), and how far
to the right the pixels of the data colours reach inside a box, which the tests compare
with the points received.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60          # seconds for Lab to answer; it imports a lot on a busy machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    def __init__(self, root: Path, port: int, token: str, proc: subprocess.Popen, log: Path):
        self.root, self.port, self.token, self.proc, self.log = root, port, token, proc, log
        self.url = f"http://127.0.0.1:{port}"

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(self.url + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def open_url(self, notebook: str, frontend: str = "lab") -> str:
        if frontend == "notebook":
            return f"{self.url}/notebooks/{notebook}?token={self.token}"
        return f"{self.url}/lab/tree/{notebook}?token={self.token}&reset"

    def open(self, page, notebook: str, frontend: str = "lab") -> None:
        """Open `notebook` in JupyterLab or Notebook 7 and wait for an idle kernel."""
        page.goto(self.open_url(notebook, frontend))
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
        accept = page.locator(".jp-Dialog .jp-mod-accept")   # "Select Kernel", fresh notebook
        try:
            accept.wait_for(timeout=5_000)
            accept.click()
        except PlaywrightTimeout:
            pass
        self.wait_idle()

    def wait_idle(self, timeout: float = 180.0, settle: float = 1.0) -> None:
        """Until every kernel of the server reports idle for `settle` seconds."""
        deadline, since = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                kernels = self.api("/api/kernels")
            except urllib.error.HTTPError:       # a kernel still starting: 500 for now
                kernels = None
            if kernels and all(k["execution_state"] == "idle" for k in kernels):
                since = since or time.monotonic()
                if time.monotonic() - since >= settle:
                    return
            else:
                since = None
            time.sleep(0.3)
        raise TimeoutError(f"kernels not idle after {timeout} s: {self.api('/api/kernels')}")

    def run_cells(self, page, indices) -> None:
        """Run the cells `indices` in order (Shift+Enter on each, as a student would);
        does not wait for them to finish."""
        for i in indices:
            page.locator(".jp-Notebook .jp-Cell").nth(i).locator(".jp-InputPrompt").click()
            page.keyboard.press("Shift+Enter")
            time.sleep(0.2)

    def shutdown_kernels(self) -> None:
        for s in self.api("/api/sessions"):
            self.api(f"/api/sessions/{s['id']}", method="DELETE")


@pytest.fixture
def pixels():
    return Pixels


@pytest.fixture
def artifacts(tmp_path) -> Path:
    out = Path(os.environ.get("HPCLAB_ARTIFACTS", tmp_path / "artifacts")) / "browser"
    out.mkdir(parents=True, exist_ok=True)
    print(f"browser screenshots in {out}")
    return out


@pytest.fixture
def lab(tmp_path, request):
    root = tmp_path / "root"
    root.mkdir()
    for nb in getattr(request.module, "NOTEBOOKS", ()):
        shutil.copy(REPO / nb, root / Path(nb).name)
    home = tmp_path / "home"
    settings = home / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = dict(os.environ,
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               IPYTHONDIR=str(home / "ipython"), MPLCONFIGDIR=str(home / "mpl"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "lab-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    port, token = _free_port(), "hpclab-browser-test"
    log = tmp_path / "lab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
           f"--port={port}", "--ip=127.0.0.1", f"--ServerApp.root_dir={root}",
           f"--IdentityProvider.token={token}", "--ServerApp.port_retries=0",
           "--LabApp.news_url=", "--ServerApp.disable_check_xsrf=True"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = Lab(root, port, token, proc, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n"
                                   + log.read_text()[-3000:])
            try:
                server.api("/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter lab did not answer on port {port} within "
                                       f"{START_TIMEOUT} s:\n" + log.read_text()[-3000:])
                time.sleep(0.5)
        yield server
    finally:
        try:
            server.shutdown_kernels()
        except OSError:
            pass
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: `apt-get install -y chromium` "
                    "(make system-deps does it)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu",
                                          "--disable-dev-shm-usage"])
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.set_default_timeout(60_000)
            yield pg
        finally:
            browser.close()


class Pixels:
    """A widget's picture as an RGB array, and what a viewer would read off it."""

    def __init__(self, png: bytes):
        self.rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)

    @classmethod
    def of(cls, locator, path=None) -> Pixels:
        """The element's screenshot (kept at `path` when given)."""
        return cls(locator.screenshot(path=path))

    def boxes(self, min_fraction: float = 0.45) -> list[tuple[int, int, int, int]]:
        """Axes boxes (x0, y0, x1, y1), left to right: pairs of dark vertical lines
        longer than `min_fraction` of the picture's height, and their top and bottom."""
        dark = self.rgb.max(axis=2) < 90
        h = dark.shape[0]
        cols = np.flatnonzero(dark.sum(axis=0) > min_fraction * h)
        groups = []                          # neighbouring columns: one line
        for c in cols:
            if groups and c - groups[-1][-1] <= 2:
                groups[-1].append(c)
            else:
                groups.append([c])
        lines = [int(np.mean(g)) for g in groups]
        out = []
        for x0, x1 in zip(lines[::2], lines[1::2]):
            rows = np.flatnonzero(dark[:, x0 + 3:x1 - 2].mean(axis=1) > 0.6)
            if len(rows) >= 2:
                out.append((x0, int(rows[0]), x1, int(rows[-1])))
        return out

    def mask(self, color: str, tol: int = 40) -> np.ndarray:
        rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
        return np.abs(self.rgb - rgb).max(axis=2) <= tol

    def coloured(self) -> np.ndarray:
        """Saturated pixels: the data lines and bars (axes, text and grid are grey)."""
        return (self.rgb.max(axis=2) - self.rgb.min(axis=2)) > 60

    def without_legend(self, mask: np.ndarray, box) -> np.ndarray:
        """`mask` with the legend inside `box` blanked: the rectangle framed by light
        grey (#bbb) lines, long straight runs that neither data nor grid lines make."""
        x0, y0, x1, y1 = box
        frame = np.zeros_like(mask)
        frame[y0 + 2:y1 - 1, x0 + 2:x1 - 1] = (np.abs(self.rgb - 187).max(axis=2) <= 6)[
            y0 + 2:y1 - 1, x0 + 2:x1 - 1]
        rows = np.flatnonzero(frame.sum(axis=1) > 60)        # its top and bottom lines
        out = mask.copy()
        if len(rows) >= 2:
            cols = np.flatnonzero(frame[rows[0]] | frame[rows[-1]])
            out[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 2] = False
        return out

    def reach(self, mask: np.ndarray, box) -> float:
        """How far right the pixels of `mask` reach inside the box, as a fraction of
        its width (0: none, or none starting at the left edge, where data starts).
        Blank the legend first (`without_legend`)."""
        x0, y0, x1, y1 = box
        hit = np.flatnonzero(mask[y0 + 2:y1 - 1, x0 + 2:x1 - 1].any(axis=0))
        if not len(hit) or hit[0] > 0.08 * (x1 - x0):
            return 0.0
        return (hit[-1] + 2) / (x1 - x0)

    def count(self, mask: np.ndarray, box) -> int:
        x0, y0, x1, y1 = box
        return int(mask[y0 + 2:y1 - 1, x0 + 2:x1 - 1].sum())

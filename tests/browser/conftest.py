"""A throw-away JupyterLab server and a headless Debian Chromium for the browser tests.

`lab` starts `jupyter lab` on a free port in a temporary root holding copies of the
notebooks the test module lists in `NOTEBOOKS` (paths from the repository root), with its own JUPYTER_CONFIG_DIR, JUPYTER_RUNTIME_DIR, IPYTHONDIR,
MPLCONFIGDIR and lab settings (the "news" toast switched off), and stops the server and
its kernels afterwards. `page` is a Playwright page in Debian's `chromium` (Playwright
cannot download its own browser here). Screenshots go to $HPCLAB_ARTIFACTS, or to the
test's tmp dir; the path is printed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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

    def open_url(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?token={self.token}&reset"

    def shutdown_kernels(self) -> None:
        for s in self.api("/api/sessions"):
            self.api(f"/api/sessions/{s['id']}", method="DELETE")


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

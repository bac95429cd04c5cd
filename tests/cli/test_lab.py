"""`hpclab lab`: it really starts JupyterLab on the notebooks folder and stops cleanly."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from types import SimpleNamespace

import psutil
import pytest

from hpclab.lab import NEWS_OFF, build_command, write_settings_overrides

pytestmark = [pytest.mark.unit_b]
TOKEN = "hpclab-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path):
    req = urllib.request.Request(f"http://localhost:{port}{path}",
                                 headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def test_lab_starts_serves_and_stops_without_orphans(tmp_path):
    port = free_port()
    env = {**os.environ}
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "MPLCONFIGDIR"):
        env[var] = str(tmp_path / var.lower())
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-m", "hpclab", "lab", "--engines", "3",
                             "--port", str(port), "--no-browser",
                             f"--ServerApp.token={TOKEN}"], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    children = []
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = get(port, "/api/status")
                break
            except OSError:
                time.sleep(0.5)
        assert status is not None, f"JupyterLab did not answer on port {port} within 90 s"
        names = {item["name"] for item in get(port, "/api/contents")["content"]}
        assert "lectures" in names                    # root_dir is the notebooks folder
        server = psutil.Process(proc.pid)
        assert server.environ().get("HPCLAB_ENGINES") == "3"
        children = server.children(recursive=True)
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode is not None
    assert "[lab] stop it with Ctrl-C" in out
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left running: {alive}"


def test_command_line(tmp_path, monkeypatch):
    args = SimpleNamespace(engines=4, port=9999, no_browser=True)
    cmd, env = build_command(args, ["--ServerApp.token=x"])
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert "--ServerApp.ip=localhost" in cmd and "--ServerApp.port=9999" in cmd
    assert "--no-browser" in cmd and cmd[-1] == "--ServerApp.token=x"
    assert ("--allow-root" in cmd) == (os.geteuid() == 0)
    assert env["HPCLAB_ENGINES"] == "4"
    monkeypatch.chdir(tmp_path)                 # no notebooks/ here: the repo's is used
    root = next(c for c in build_command(args, [])[0] if c.startswith("--ServerApp.root_dir"))
    assert root.endswith("notebooks")


def test_settings_overrides_are_added_but_never_clobbered(tmp_path):
    path = write_settings_overrides(tmp_path)
    assert json.loads(path.read_text()) == NEWS_OFF
    mine = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "true"},
            "@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}
    path.write_text(json.dumps(mine))
    write_settings_overrides(tmp_path)
    assert json.loads(path.read_text()) == mine
    other = tmp_path / "other"
    p2 = other / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    p2.parent.mkdir(parents=True)
    p2.write_text(json.dumps({"x:y": {"a": 1}}))
    write_settings_overrides(other)
    assert json.loads(p2.read_text()) == {**NEWS_OFF, "x:y": {"a": 1}}


def test_bad_arguments_are_rejected():
    proc = subprocess.run([sys.executable, "-m", "hpclab", "lab", "--engines", "0"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--engines must be >= 1, got 0" in proc.stderr

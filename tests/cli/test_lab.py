"""`hpclab lab`: it really starts JupyterLab and stops cleanly; the student's lab shows no
solutions and no nbgrader tools, the instructor's (`--instructor`) shows both."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from types import SimpleNamespace

import psutil
import pytest

from hpclab.lab import NEWS_OFF, build_command, student_view, write_settings_overrides

pytestmark = [pytest.mark.unit_b]
TOKEN = "hpclab-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, raw=False):
    req = urllib.request.Request(f"http://localhost:{port}{path}",
                                 headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return body.decode() if raw else json.loads(body)


def status_of(port, path):
    try:
        get(port, path, raw=True)
        return 200
    except urllib.error.HTTPError as e:
        return e.code


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@contextmanager
def lab(tmp_path, *args):
    """Start `hpclab lab ARGS` on a free port; yield (port, process, output lines so far)."""
    port = free_port()
    env = {**os.environ}
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "MPLCONFIGDIR"):
        env[var] = str(tmp_path / var.lower())
    proc = subprocess.Popen([sys.executable, "-m", "hpclab", "lab", *args,
                             "--port", str(port), "--no-browser",
                             f"--ServerApp.token={TOKEN}"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    result = SimpleNamespace(port=port, proc=proc, children=[], out="")
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = get(port, "/api/status")
                break
            except OSError:
                time.sleep(0.5)
        assert status is not None, f"JupyterLab did not answer on port {port} within 90 s"
        yield result
        result.children = psutil.Process(proc.pid).children(recursive=True)
    finally:
        proc.terminate()
        try:
            result.out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            result.out, _ = proc.communicate()


def page_config(port):
    """The page config JupyterLab's /lab page hands the browser (extensions on and off)."""
    page = get(port, "/lab", raw=True)
    found = re.search(r'<script id="jupyter-config-data"[^>]*>(.*?)</script>', page, re.DOTALL)
    assert found, "no jupyter-config-data in the /lab page"
    return json.loads(found.group(1))


def walk(port, path=""):
    """Every file and folder path the contents API lists, recursively."""
    listing = get(port, f"/api/contents/{path}")
    out = []
    for item in listing["content"]:
        out.append(item["path"])
        if item["type"] == "directory":
            out += walk(port, item["path"])
    return out


def test_student_lab_shows_no_solutions_and_no_nbgrader(tmp_path):
    with lab(tmp_path, "--engines", "3") as server:
        port = server.port
        names = {item["name"] for item in get(port, "/api/contents")["content"]}
        assert {"lectures", "exercises"} <= names
        paths = walk(port)
        assert not [p for p in paths if "source" in p.split("/")], paths
        notebooks = [p for p in paths if p.endswith(".ipynb")]
        assert any(p.startswith("exercises/") for p in notebooks)
        for path in notebooks:
            if path.startswith("exercises/"):
                text = json.dumps(get(port, f"/api/contents/{path}")["content"])
                for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS"):
                    assert marker not in text, f"{path} carries {marker!r}"
        assert status_of(port, "/api/contents/exercises/source") == 404
        assert status_of(port, "/api/contents/../exercises/source") in (400, 404)
        assert status_of(port, "/formgrader") == 404        # nbgrader's server side is off
        config = page_config(port)                          # and its JupyterLab extension
        assert "@jupyter/nbgrader" in config["disabledExtensions"], config["disabledExtensions"]
        assert psutil.Process(server.proc.pid).environ().get("HPCLAB_ENGINES") == "3"
    assert server.proc.returncode is not None
    assert "[lab] stop it with Ctrl-C" in server.out and "student" in server.out
    _, alive = psutil.wait_procs(server.children, timeout=10)
    assert not alive, f"left running: {alive}"


def test_instructor_lab_has_the_sources_and_nbgrader(tmp_path):
    with lab(tmp_path, "--instructor") as server:
        port = server.port
        assert "source" in {i["name"] for i in get(port, "/api/contents/exercises")["content"]}
        assert status_of(port, "/formgrader") == 200
        config = page_config(port)
        assert "@jupyter/nbgrader" not in config.get("disabledExtensions", [])
    assert "instructor" in server.out


def test_student_view_links_release_as_exercises(tmp_path):
    notebooks = tmp_path / "notebooks"
    for d in ("lectures", "exercises/source/a1", "exercises/release/a1"):
        (notebooks / d).mkdir(parents=True)
    (notebooks / "README.md").write_text("course")
    view = student_view(notebooks, tmp_path / "view")
    assert sorted(p.name for p in view.iterdir()) == ["README.md", "exercises", "lectures"]
    assert (view / "exercises").resolve() == (tmp_path / "exercises").resolve()  # a working copy
    student_view(notebooks, tmp_path / "view")             # rebuilt, targets untouched
    assert (notebooks / "exercises" / "source" / "a1").is_dir()


def test_command_line(tmp_path, monkeypatch):
    args = SimpleNamespace(engines=4, port=9999, no_browser=True, instructor=True)
    cmd, env = build_command(args, ["--ServerApp.token=x"])
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert "--ServerApp.ip=localhost" in cmd and "--ServerApp.port=9999" in cmd
    assert "--no-browser" in cmd and cmd[-1] == "--ServerApp.token=x"
    assert ("--allow-root" in cmd) == (os.geteuid() == 0)
    assert env["HPCLAB_ENGINES"] == "4"
    monkeypatch.chdir(tmp_path)                 # no notebooks/ here: the repo's is used
    root = next(c for c in build_command(args, [])[0] if c.startswith("--ServerApp.root_dir"))
    assert root.endswith("notebooks")
    student = SimpleNamespace(engines=2, port=None, no_browser=False, instructor=False)
    cmd, env = build_command(student, [])
    root = next(c for c in cmd if c.startswith("--ServerApp.root_dir"))
    assert root.endswith(os.path.join("out", "lab", "student"))
    assert env["JUPYTER_CONFIG_PATH"].split(os.pathsep)[0].endswith("student-config")


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

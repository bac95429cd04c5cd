"""The course entry page, notebooks/START_HERE.ipynb, opens first in `make lab` and lists
every lecture in order.

- fast: `hpclab lab`'s command sets JupyterLab's default URL to the entry page, for the
  student's lab (whose root, out/lab/student/, links it) and the instructor's; the page
  links every lecture on disk, and every notebook it links exists or is listed as planned
  in the syllabus;
- slow: a real `hpclab lab` server redirects "/" to /lab/tree/START_HERE.ipynb.
"""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from hpclab.lab import ENTRY_PAGE, build_command

pytestmark = [pytest.mark.notebooks, pytest.mark.unit_a]

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "notebooks" / ENTRY_PAGE
URL = f"/lab/tree/{ENTRY_PAGE}"
TOKEN = "hpclab-entry-page-token"


def _args(instructor):
    return SimpleNamespace(engines=2, instructor=instructor, port=None, no_browser=True)


@pytest.mark.parametrize("instructor", [False, True], ids=["student", "instructor"])
def test_lab_opens_the_entry_page_first(instructor, monkeypatch):
    monkeypatch.chdir(REPO)
    cmd, _ = build_command(_args(instructor), [])
    assert f"--LabApp.default_url={URL}" in cmd, cmd
    root = Path(next(c.split("=", 1)[1] for c in cmd if c.startswith("--ServerApp.root_dir=")))
    assert (root / ENTRY_PAGE).resolve() == PAGE.resolve(), f"{root} does not show {ENTRY_PAGE}"


def _linked_notebooks():
    text = "\n".join(c.source for c in nbformat.read(PAGE, as_version=4).cells)
    return set(re.findall(r"\]\(((?:lectures|demos)/[\w.-]+\.ipynb)\)", text))


def test_entry_page_links_every_lecture():
    linked = _linked_notebooks()
    on_disk = {p.relative_to(REPO / "notebooks").as_posix()
               for p in (REPO / "notebooks" / "lectures").glob("*.ipynb")}
    assert on_disk - linked == set(), f"add these lectures to {ENTRY_PAGE}: {on_disk - linked}"
    syllabus = (REPO / "course" / "syllabus.md").read_text()
    planned = syllabus.partition("## Planned notebooks")[2].split("\n## ")[0]
    missing = sorted(p for p in linked if not (REPO / "notebooks" / p).exists()
                     and f"notebooks/{p}" not in planned)
    assert missing == [], f"{ENTRY_PAGE} links notebooks that neither exist nor are planned: {missing}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.mark.slow
def test_real_lab_redirects_to_the_entry_page(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ}
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        env[var] = str(tmp_path / var.lower())
    proc = subprocess.Popen([sys.executable, "-m", "hpclab", "lab", "--port", str(port),
                             "--no-browser", f"--ServerApp.token={TOKEN}"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    opener = urllib.request.build_opener(_NoRedirect)
    location = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None and location is None:
            req = urllib.request.Request(f"http://localhost:{port}/",
                                         headers={"Authorization": f"token {TOKEN}"})
            try:
                opener.open(req, timeout=10)
            except urllib.error.HTTPError as e:
                if e.code in (301, 302, 303, 307):
                    location = e.headers["Location"]
            except OSError:
                time.sleep(0.5)
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert location is not None, f"JupyterLab did not answer on port {port}:\n{out[-2000:]}"
    path = urllib.parse.urlsplit(location).path     # JupyterLab appends the query, "?"
    assert path.endswith(URL), f"'/' redirects to {location}, not the entry page"

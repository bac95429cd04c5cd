"""nbgrader's whole cycle for real, for one small assignment and two students.

The instructor releases b1_gd_step to an exchange folder; two students, each with a home
folder of their own, fetch it, fill it in (alice with the solution, bob with the seed
article's sign error, θ + η∇J) and submit; the instructor collects, autogrades and writes
feedback — every step through `hpclab grade`. Scores come from nbgrader's gradebook;
each feedback page must name the test that failed and hide the hidden tests.
"""

import json
import re

import pytest

from hpclab import grading
from hpclab.grading.cli import main

pytestmark = [pytest.mark.unit_b, pytest.mark.notebooks, pytest.mark.slow,
              pytest.mark.timeout(900)]

ASSIGNMENT = "b1_gd_step"
MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n", re.MULTILINE)


def _solution_code():
    nb = json.loads((grading.EXERCISES / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
    (cell,) = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("solution")]
    return MARKERS.sub("", "".join(cell["source"]))


def _fill(path, code):
    """What a student does in JupyterLab: write code into the solution cell and save."""
    nb = json.loads(path.read_text())
    (cell,) = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("solution")]
    cell["source"] = code
    path.write_text(json.dumps(nb, indent=1))


def _grade(capsys, *args):
    """`hpclab grade ARGS` (in this process, so no interpreter start-up): its stdout."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_release_fetch_submit_collect_autograde_feedback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HPCLAB_SMALL", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    exchange, course = tmp_path / "exchange", tmp_path / "grading"
    exchange.mkdir()
    monkeypatch.setenv("HPCLAB_EXCHANGE", str(exchange))

    out = _grade(capsys, "--grading", course, "release", ASSIGNMENT)
    outbound = exchange / "hpclab" / "outbound" / ASSIGNMENT
    assert f"released {outbound}" in out
    assert "BEGIN SOLUTION" not in (outbound / f"{ASSIGNMENT}.ipynb").read_text()

    right = _solution_code()
    wrong = right.replace("return theta - lr * grad", "return theta + lr * grad")
    assert wrong != right
    for student, code in (("alice", right), ("bob", wrong)):
        home = tmp_path / "home" / student
        home.mkdir(parents=True)
        monkeypatch.setenv("JUPYTER_DATA_DIR", str(home / ".jupyter"))   # submit's cache
        _grade(capsys, "fetch", ASSIGNMENT, "--into", home)
        _fill(home / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", code)
        _grade(capsys, "submit", ASSIGNMENT, "--from", home, "--student", student)
    assert len(list((exchange / "hpclab" / "inbound").iterdir())) == 2

    out = _grade(capsys, "collect", ASSIGNMENT, "--grading", course)
    assert "from 2 student(s): alice, bob" in out
    report = _grade(capsys, "autograde", "--grading", course)
    assert "alice  b1_gd_step/b1_gd_step: 3 / 3" in report, report
    assert "bob  b1_gd_step/b1_gd_step: 0 / 3" in report, report
    assert "    FAILED test_gradient_and_step (2 points): AssertionError" in report, report
    assert "FAILED" not in report.split("bob  ")[0], report      # alice passes every test

    out = _grade(capsys, "feedback", ASSIGNMENT, "--grading", course)
    pages = {p.parts[-3]: p.read_text() for p in (course / "feedback").glob("*/*/*.html")}
    assert sorted(pages) == ["alice", "bob"] and out.count("wrote ") == 2
    assert "Score: 3.0 / 3.0" in pages["alice"]
    bob = pages["bob"]
    assert "Score: 0.0 / 3.0" in bob
    assert "test_gradient_and_step" in bob and "AssertionError" in bob
    for page in pages.values():
        assert "HIDDEN TESTS" not in page and "autograd_used" not in page

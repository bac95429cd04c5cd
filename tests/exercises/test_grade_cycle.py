"""nbgrader's whole cycle for real, for one small assignment and two students.

The instructor releases b1_gd_step to an exchange folder; two students, each with a home
folder of their own, fetch it, fill it in (alice with the solution, bob with the seed
article's sign error, θ + η∇J) and submit; the instructor collects, autogrades and writes
feedback. Scores come from nbgrader's gradebook; each feedback page must name the test
that failed and hide the hidden tests.
"""

import json
import re

import pytest

from hpclab import grading

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


def test_release_fetch_submit_collect_autograde_feedback(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAB_SMALL", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    exchange, course = tmp_path / "exchange", tmp_path / "grading"
    exchange.mkdir()

    [outbound] = grading.release([ASSIGNMENT], exchange, grading=course)
    assert (outbound / f"{ASSIGNMENT}.ipynb").is_file()
    assert "BEGIN SOLUTION" not in (outbound / f"{ASSIGNMENT}.ipynb").read_text()

    right = _solution_code()
    wrong = right.replace("return theta - lr * grad", "return theta + lr * grad")
    assert wrong != right
    for student, code in (("alice", right), ("bob", wrong)):
        home = tmp_path / "home" / student
        home.mkdir(parents=True)
        folder = grading.fetch(ASSIGNMENT, exchange, into=home)
        _fill(folder / f"{ASSIGNMENT}.ipynb", code)
        grading.submit(ASSIGNMENT, exchange, home, student=student, cache=home / ".cache")

    assert grading.collect(ASSIGNMENT, exchange, grading=course) == ["alice", "bob"]
    scores = {s.student: s for s in grading.autograde(course / "submitted", course=course)}
    assert (scores["alice"].score, scores["alice"].max_score) == (3, 3)
    assert scores["alice"].failures == []
    assert scores["bob"].score < 3
    assert "test_gradient_and_step" in [f.test for f in scores["bob"].failures]

    pages = {p.parts[-3]: p.read_text() for p in grading.feedback(ASSIGNMENT, course)}
    assert sorted(pages) == ["alice", "bob"]
    assert "Score: 3.0 / 3.0" in pages["alice"]
    bob = pages["bob"]
    assert "test_gradient_and_step" in bob and "AssertionError" in bob
    assert f"Score: {scores['bob'].score:.1f} / 3.0" in bob
    for page in pages.values():
        assert "HIDDEN TESTS" not in page and "autograd_used" not in page

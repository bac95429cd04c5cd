"""`hpclab grade` says what went wrong in words an instructor can act on.

- a notebook renamed by JupyterLab (`b1_gd_step-Copy1.ipynb`) is graded under its name,
  with a note; two candidate copies get a message naming both and the rename to make,
  before any kernel starts; a test cell pasted twice or deleted is handled and named;
- when nbgrader itself fails, the message starts with the error that happened, then
  nbgrader's log (its own message only points to "the above traceback");
- the report lists, per student and notebook, each failing test with its points and the
  error it printed; the slow test grades a real wrong submission through the CLI;
- the student's lab saves to a working copy, never over the committed release/ copy.
"""

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from hpclab import grading
from hpclab.grading.autograde import _missing_tests
from hpclab.grading.course import actual_errors
from hpclab.grading.submissions import notebooks_to_grade, without_duplicate_ids
from hpclab.lab import student_view

pytestmark = [pytest.mark.unit_b]

REPO = Path(__file__).resolve().parents[2]
RELEASE = grading.EXERCISES / "release" / "b1_gd_step" / "b1_gd_step.ipynb"
SOURCE = grading.EXERCISES / "source" / "b1_gd_step" / "b1_gd_step.ipynb"


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "hpclab", "grade", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, **(env or {})})


def test_a_copy_renamed_by_jupyterlab_is_graded_under_its_name(tmp_path):
    folder = tmp_path / "alice"
    folder.mkdir()
    shutil.copy(RELEASE, folder / "b1_gd_step-Copy1.ipynb")
    (folder / "notes.ipynb").write_text(RELEASE.read_text())
    picked = notebooks_to_grade("b1_gd_step", folder, grading.EXERCISES)
    assert picked.files == {"b1_gd_step.ipynb": folder / "b1_gd_step-Copy1.ipynb"}
    assert any("graded b1_gd_step-Copy1.ipynb as b1_gd_step.ipynb" in n for n in picked.notes)
    assert any("not graded" in n and "notes.ipynb" in n for n in picked.notes)


def test_two_candidate_copies_get_a_clear_message(tmp_path):
    for layout in ("b1_gd_step", "alice"):       # an assignment folder, a flat folder
        folder = tmp_path / layout
        folder.mkdir()
        shutil.copy(RELEASE, folder / "b1_gd_step-Copy1.ipynb")
        shutil.copy(RELEASE, folder / "b1_gd_step-Copy2.ipynb")
        with pytest.raises(grading.SubmissionError, match="rename the one to grade to "
                           "b1_gd_step.ipynb"):
            grading.autograde(folder)
    proc = _cli("autograde", str(tmp_path / "alice"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "b1_gd_step-Copy1.ipynb, b1_gd_step-Copy2.ipynb" in proc.stderr, proc.stderr
    assert "rename the one to grade to b1_gd_step.ipynb" in proc.stderr, proc.stderr


def test_a_pasted_copy_of_a_test_cell_keeps_one_graded_cell():
    nb = json.loads(RELEASE.read_text())
    i = next(k for k, c in enumerate(nb["cells"])
             if c["metadata"].get("nbgrader", {}).get("grade_id") == "test_fit")
    nb["cells"].insert(i, copy.deepcopy(nb["cells"][i]))
    cleaned, duplicated = without_duplicate_ids(nb)
    assert duplicated == ["test_fit"]
    ids = [c["metadata"].get("nbgrader", {}).get("grade_id") for c in cleaned["cells"]]
    assert ids.count("test_fit") == 1 and ids.index("test_fit") == i + 1


def test_a_deleted_test_cell_is_named(tmp_path):
    nb = json.loads(RELEASE.read_text())
    nb["cells"] = [c for c in nb["cells"]
                   if c["metadata"].get("nbgrader", {}).get("grade_id") != "test_fit"]
    path = tmp_path / "b1_gd_step.ipynb"
    path.write_text(json.dumps(nb))
    cells = [SimpleNamespace(name=n, max_score=p, cell_type="code")
             for n, p in (("test_gradient_and_step", 2), ("test_fit", 1))]
    assert [(f.test, f.points) for f in _missing_tests(path, cells)] == [("test_fit", 1.0)]


def test_nbgrader_failures_print_the_error_itself(tmp_path):
    """A source notebook with a grade id used twice: nbgrader's own message says "see the
    above traceback"; ours starts with the error and carries nbgrader's log."""
    nb = json.loads(SOURCE.read_text())
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("grade_id") == "test_gradient_and_step":
            meta["grade_id"] = "test_fit"
    (tmp_path / "source" / "x").mkdir(parents=True)
    (tmp_path / "source" / "x" / "x.ipynb").write_text(json.dumps(nb))
    proc = _cli("--exercises", str(tmp_path), "generate")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first == ("hpclab grade generate: nbgrader generate x failed: "
                     "ValidationError: Duplicate grade id: test_fit"), proc.stderr
    assert "nbgrader's log:" in proc.stderr and "checkcellmetadata.py" in proc.stderr


def test_actual_errors_skip_nbgraders_wrapper():
    log = ("[ERROR] Traceback (most recent call last):\n  File \"x.py\", line 1\n"
           "nbformat.validator.NotebookValidationError: 'source' is a required property\n"
           "nbgrader.converters.base.NbGraderException: Please see the the above traceback")
    assert actual_errors(log) == ["NotebookValidationError: 'source' is a required property"]


def test_students_save_to_a_working_copy_not_to_release(tmp_path):
    """The student's lab serves a copy of release/: saving (JupyterLab, or nbgrader's
    Validate, which saves first) never writes over the committed student copy."""
    notebooks = tmp_path / "notebooks"
    release = notebooks / "exercises" / "release" / "b1_gd_step"
    release.mkdir(parents=True)
    (notebooks / "exercises" / "source").mkdir()
    shutil.copy(RELEASE, release / "b1_gd_step.ipynb")
    view = student_view(notebooks, tmp_path / "lab" / "student")
    opened = view / "exercises" / "b1_gd_step" / "b1_gd_step.ipynb"
    assert opened.resolve() != (release / "b1_gd_step.ipynb").resolve()
    opened.write_text("{}")                                 # the student's save
    assert (release / "b1_gd_step.ipynb").read_text() == RELEASE.read_text()
    (release / "extra.txt").write_text("new")               # a later release adds a file
    view = student_view(notebooks, tmp_path / "lab" / "student")
    assert opened.read_text() == "{}"                       # the student's work stays
    assert (view / "exercises" / "b1_gd_step" / "extra.txt").read_text() == "new"


def test_failures_are_read_from_the_graded_cells(tmp_path):
    cells = [
        {"cell_type": "code", "source": "", "metadata": {"nbgrader": {
            "grade": True, "grade_id": "test_a", "points": 2}},
         "outputs": [{"output_type": "error", "ename": "AssertionError",
                      "evalue": "mse_gradient used automatic differentiation", "traceback": []}]},
        {"cell_type": "code", "source": "", "metadata": {"nbgrader": {
            "grade": True, "grade_id": "test_b", "points": 1}}, "outputs": []},
        {"cell_type": "code", "source": "", "metadata": {},  # an ungraded cell that failed
         "outputs": [{"output_type": "error", "ename": "NameError", "evalue": "x"}]},
    ]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells}))
    assert grading._failures(path) == [
        grading.Failure("test_a", 2.0, "AssertionError: mse_gradient used automatic differentiation")]


def test_report_names_the_failing_test_per_student():
    scores = [grading.Score("b1_gd_step", "b1_gd_step", 1, 3, "alice", [
                  grading.Failure("test_gradient_and_step", 2, "AssertionError: autograd")],
                  ["graded b1_gd_step-Copy1.ipynb as b1_gd_step.ipynb"]),
              grading.Score("b1_gd_step", "b1_gd_step", 3, 3, "bob")]
    text = grading.report(scores)
    assert "alice  b1_gd_step/b1_gd_step: 1 / 3" in text
    assert "    NOTE graded b1_gd_step-Copy1.ipynb as b1_gd_step.ipynb" in text
    assert "    FAILED test_gradient_and_step (2 points): AssertionError: autograd" in text
    assert "total alice: 1 / 3" in text and "total bob: 3 / 3" in text


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.timeout(900)
def test_cli_prints_the_failing_test_of_a_wrong_submission(tmp_path):
    """A b1 submission with the seed 000 sign error (ascent) through the real CLI, saved
    as JupyterLab's renamed copy with a test cell pasted twice: graded all the same."""
    nb = json.loads(RELEASE.read_text())
    (cell,) = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("solution")]
    cell["source"] = ("def mse_gradient(X, y, theta):\n"
                      "    return X.T @ (X @ theta - y) / X.shape[0]\n\n\n"
                      "def gd_step(theta, grad, lr):\n"
                      "    return theta + lr * grad\n")
    i = next(k for k, c in enumerate(nb["cells"])
             if c["metadata"].get("nbgrader", {}).get("grade_id") == "test_fit")
    nb["cells"].insert(i, copy.deepcopy(nb["cells"][i]))   # pasted: same nbgrader metadata
    folder = tmp_path / "carol"
    folder.mkdir()
    (folder / "b1_gd_step-Copy1.ipynb").write_text(json.dumps(nb))   # JupyterLab's Duplicate
    proc = _cli("autograde", str(folder), "--student", "carol",
                env={"HPCLAB_SMALL": "1", "OMP_NUM_THREADS": "1",
                     "MPLCONFIGDIR": str(tmp_path / "mpl"), "IPYTHONDIR": str(tmp_path / "ipy")})
    assert proc.returncode == 0, proc.stderr
    assert "carol  b1_gd_step/b1_gd_step: 0 / 3" in proc.stdout, proc.stdout
    assert "NOTE graded b1_gd_step-Copy1.ipynb as b1_gd_step.ipynb" in proc.stdout, proc.stdout
    assert "NOTE b1_gd_step-Copy1.ipynb: cells test_fit appear more than once" in proc.stdout
    assert "FAILED test_gradient_and_step (2 points): AssertionError" in proc.stdout, proc.stdout
    assert "FAILED test_fit (1 point): AssertionError" in proc.stdout, proc.stdout


def test_a_broken_notebook_gets_a_clear_message(tmp_path):
    folder = tmp_path / "b1_gd_step"
    folder.mkdir()
    (folder / "b1_gd_step.ipynb").write_text('{"cells": [')   # cut off in the upload
    proc = _cli("autograde", str(folder))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "b1_gd_step.ipynb is not a readable notebook" in proc.stderr

"""`hpclab grade autograde` says what went wrong in words an instructor can act on.

- a notebook renamed by JupyterLab (`b1_gd_step-Copy1.ipynb`) gets a message naming the
  file and the rename to make, not nbgrader's traceback (fast: it is caught before any
  kernel starts);
- the report lists, per student and notebook, each failing test with its points and the
  error it printed; the slow test grades a real wrong submission through the CLI.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hpclab import grading

pytestmark = [pytest.mark.unit_b]

REPO = Path(__file__).resolve().parents[2]
RELEASE = grading.EXERCISES / "release" / "b1_gd_step" / "b1_gd_step.ipynb"


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "hpclab", "grade", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("layout", ["assignment_folder", "flat_folder"])
def test_a_copy_named_by_jupyterlab_gets_a_clear_message(tmp_path, layout):
    folder = tmp_path / ("b1_gd_step" if layout == "assignment_folder" else "alice")
    folder.mkdir()
    shutil.copy(RELEASE, folder / "b1_gd_step-Copy1.ipynb")
    proc = _cli("autograde", str(folder))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "b1_gd_step-Copy1.ipynb" in proc.stderr and "rename" in proc.stderr
    assert "to b1_gd_step.ipynb" in proc.stderr
    with pytest.raises(grading.SubmissionError, match="rename"):
        grading.autograde(folder)


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
                  grading.Failure("test_gradient_and_step", 2, "AssertionError: autograd")]),
              grading.Score("b1_gd_step", "b1_gd_step", 3, 3, "bob")]
    text = grading.report(scores)
    assert "alice  b1_gd_step/b1_gd_step: 1 / 3" in text
    assert "    FAILED test_gradient_and_step (2 points): AssertionError: autograd" in text
    assert "total alice: 1 / 3" in text and "total bob: 3 / 3" in text


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.timeout(900)
def test_cli_prints_the_failing_test_of_a_wrong_submission(tmp_path):
    """A b1 submission with the seed 000 sign error (ascent) through the real CLI."""
    nb = json.loads(RELEASE.read_text())
    (cell,) = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("solution")]
    cell["source"] = ("def mse_gradient(X, y, theta):\n"
                      "    return X.T @ (X @ theta - y) / X.shape[0]\n\n\n"
                      "def gd_step(theta, grad, lr):\n"
                      "    return theta + lr * grad\n")
    folder = tmp_path / "b1_gd_step"
    folder.mkdir()
    (folder / "b1_gd_step.ipynb").write_text(json.dumps(nb))
    proc = _cli("autograde", str(folder), "--student", "carol",
                env={"HPCLAB_SMALL": "1", "OMP_NUM_THREADS": "1",
                     "MPLCONFIGDIR": str(tmp_path / "mpl"), "IPYTHONDIR": str(tmp_path / "ipy")})
    assert proc.returncode == 0, proc.stderr
    assert "carol  b1_gd_step/b1_gd_step: 0 / 3" in proc.stdout, proc.stdout
    assert "FAILED test_gradient_and_step (2 points): AssertionError" in proc.stdout, proc.stdout
    assert "FAILED test_fit (1 point): AssertionError" in proc.stdout, proc.stdout


def test_a_broken_notebook_gets_a_clear_message(tmp_path):
    folder = tmp_path / "b1_gd_step"
    folder.mkdir()
    (folder / "b1_gd_step.ipynb").write_text('{"cells": [')   # cut off in the upload
    proc = _cli("autograde", str(folder))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "b1_gd_step.ipynb is not a readable notebook" in proc.stderr

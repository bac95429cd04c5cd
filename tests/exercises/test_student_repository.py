"""The student repository (`hpclab grade publish OUT`) holds no solution and no hidden test.

It is built from this checkout for real; then every file is searched for nbgrader's
markers (in notebooks) and for the code of every solution and hidden-test block of the
source notebooks. A planted source notebook must be caught, so the search can fail.
"""

import shutil
import subprocess
import sys

import pytest

from hpclab import grading

pytestmark = [pytest.mark.unit_b]


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    out = tmp_path_factory.mktemp("publish") / "student-repo"
    proc = subprocess.run([sys.executable, "-m", "hpclab", "grade", "publish", str(out)],
                          capture_output=True, text=True, timeout=600, check=False,
                          cwd=grading.EXERCISES.parents[1])
    assert proc.returncode == 0, proc.stderr
    assert "wrote the student repository" in proc.stdout
    return out


def test_it_holds_what_students_use(published):
    for path in ("README.md", "pyproject.toml", "Makefile", "hpclab/__init__.py",
                 "hpclab/grading/cycle.py", "course/syllabus.md", "notebooks/lectures"):
        assert (published / path).exists(), path
    for name in grading._assignments(grading.EXERCISES):
        assert list((published / "notebooks" / "exercises" / "release" / name).glob("*.ipynb")), name
    assert "hpclab grade submit" in (published / "README.md").read_text()


def test_it_holds_no_solution_and_no_hidden_test(published):
    assert not (published / "notebooks" / "exercises" / "source").exists()
    assert not (published / "tests").exists()          # wrong submissions quote solutions
    assert not (published / "course" / "instructor-guide.md").exists()
    assert not list(published.rglob("*.db"))
    assert grading.leaks(published) == []


def test_a_planted_solution_is_found(published, tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(published / "notebooks", copy / "notebooks")
    source = grading.EXERCISES / "source" / "b2_adam" / "b2_adam.ipynb"
    shutil.copy(source, copy / "notebooks" / "b2_adam.ipynb")
    problems = grading.leaks(copy)
    assert any("b2_adam.ipynb: contains '### BEGIN SOLUTION'" in p for p in problems), problems
    assert any("holds the code of b2_adam.ipynb" in p for p in problems), problems


def test_publish_refuses_an_existing_folder(tmp_path):
    with pytest.raises(FileExistsError, match="exists"):
        grading.publish(tmp_path)

"""The exercises grade as they should, through nbgrader (run with `pytest tests/exercises`).

For every assignment in notebooks/exercises/source/:
- the instructor's source (the solution) scores full marks under `nbgrader autograde`;
- the generated student copy in release/ runs top to bottom — the only cells that fail are
  the graded test cells, which call the functions the student has not written yet — and
  scores zero;
- release/ is exactly what `hpclab grade generate` writes from source/ now.
Autograding runs real kernels and, for C1 and D1, real gloo process groups.
"""

import json

import pytest

from hpclab import grading

# Autograding all six assignments takes 1-4 minutes (kernels, process groups) and the
# module-scoped fixture counts against the first test that uses it.
pytestmark = [pytest.mark.notebooks, pytest.mark.cluster, pytest.mark.slow,
              pytest.mark.timeout(1200)]

UNIT = {"a": pytest.mark.unit_a, "b": pytest.mark.unit_b, "c": pytest.mark.unit_c,
        "d": pytest.mark.unit_d}
ASSIGNMENTS = grading._assignments(grading.EXERCISES)
PARAMS = [pytest.param(a, marks=UNIT[a[0]]) for a in ASSIGNMENTS]


def _isolated_env(mp, tmp):
    mp.setenv("HPCLAB_SMALL", "1")
    mp.setenv("OMP_NUM_THREADS", "1")
    mp.setenv("MPLCONFIGDIR", str(tmp / "mpl"))
    mp.setenv("IPYTHONDIR", str(tmp / "ipython"))


def _grade(tmp, folder, autograde_split):
    with pytest.MonkeyPatch.context() as mp:
        _isolated_env(mp, tmp)
        scores = autograde_split(folder, keep=tmp / "autograded")
    return {s.assignment: s for s in scores}, tmp / "autograded"


@pytest.fixture(scope="module")
def solution(tmp_path_factory, selected, only, autograde_split):
    tmp = tmp_path_factory.mktemp("solution")
    names = selected("name") & set(ASSIGNMENTS)
    return _grade(tmp, only(grading.EXERCISES / "source", names, tmp), autograde_split)


@pytest.fixture(scope="module")
def student(tmp_path_factory, selected, only, autograde_split):
    tmp = tmp_path_factory.mktemp("student")
    names = selected("name") & set(ASSIGNMENTS)
    return _grade(tmp, only(grading.EXERCISES / "release", names, tmp), autograde_split)


def _errored_cells(path):
    """(grade_id, is_graded_test) of every executed cell with an error output."""
    out = []
    for cell in json.loads(path.read_text())["cells"]:
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            meta = cell["metadata"].get("nbgrader", {})
            out.append((meta.get("grade_id"), bool(meta.get("grade"))))
    return out


def test_there_are_exercises():
    assert len(ASSIGNMENTS) >= 6, ASSIGNMENTS


@pytest.mark.parametrize("name", PARAMS)
def test_solution_scores_full_marks(name, solution):
    scores, executed = solution
    s = scores[name]
    assert s.max_score > 0
    errors = [e for nb in (executed / name).glob("*.ipynb") for e in _errored_cells(nb)]
    assert s.score == s.max_score, f"{name}: {s.score}/{s.max_score}; failing cells {errors}"
    assert errors == []


@pytest.mark.parametrize("name", PARAMS)
def test_student_copy_runs_and_scores_zero(name, student):
    scores, executed = student
    s = scores[name]
    assert s.score == 0, f"the unsolved copy of {name} scores {s.score}/{s.max_score}"
    for nb in (executed / name).glob("*.ipynb"):
        errors = _errored_cells(nb)
        not_tests = [gid for gid, graded in errors if not graded]
        assert not_tests == [], f"{nb.name}: cells other than tests fail: {not_tests}"
        graded = [c["metadata"]["nbgrader"]["grade_id"]
                  for c in json.loads(nb.read_text())["cells"]
                  if c["metadata"].get("nbgrader", {}).get("grade")]
        assert sorted(gid for gid, _ in errors) == sorted(graded), \
            "every graded test should fail on the unsolved copy"


def test_release_in_sync_with_source():
    problems = grading.check()
    assert problems == [], "run `hpclab grade generate` and commit release/:\n" + \
        "\n".join(problems)

"""The graders catch wrong work and accept right work in another form (real nbgrader).

Each WRONG submission in wrong_submissions/<assignment>.py is a
student copy (release/) whose solution cell holds a known mistake; autograding must give
it less than full marks, and the test that catches it must be among the failures. Each
EQUIVALENT submission writes the solution differently but correctly and must keep full
marks. A submission is made from the instructor's solution cell by text replacements, so
a change of the solution that breaks one fails loudly here rather than testing nothing.

All submissions are graded in nbgrader's submitted/ layout (one folder per student), as
an instructor grades a class: `grading.autograde` on each half of the class, in two
processes (conftest's `autograde_split`).
"""

import importlib.util
import json
import re
from pathlib import Path

import pytest

from hpclab import grading

pytestmark = [pytest.mark.notebooks, pytest.mark.cluster, pytest.mark.slow,
              pytest.mark.timeout(1500)]

# assignment -> {name: (replacements in the solution cell, failing test or None if right)},
# one file per assignment: wrong_submissions/<assignment>.py. The failing test may be a
# pair (test, regular expression its error message must match).
WRONG = Path(__file__).parent / "wrong_submissions"


def _load(path: Path) -> dict:
    spec = importlib.util.spec_from_file_location(f"wrong_submissions_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SUBMISSIONS


SUBMISSIONS = {path.stem: _load(path) for path in sorted(WRONG.glob("*.py"))}
CASES = [(a, name) for a, subs in SUBMISSIONS.items() for name in subs]
MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n", re.MULTILINE)


def _src(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _solution_cell(cells):
    found = [i for i, c in enumerate(cells) if c["metadata"].get("nbgrader", {}).get("solution")
             and c["cell_type"] == "code"]
    assert len(found) == 1, f"expected one solution code cell, found {found}"
    return found[0]


def _submission(assignment, replacements):
    """The release notebook with the solution cell filled by the edited solution."""
    source = grading.EXERCISES / "source" / assignment / f"{assignment}.ipynb"
    release = grading.EXERCISES / "release" / assignment / f"{assignment}.ipynb"
    code = MARKERS.sub("", _src(json.loads(source.read_text())["cells"][
        _solution_cell(json.loads(source.read_text())["cells"])]))
    for old, new in replacements:
        assert old in code, f"{assignment}: the solution no longer contains {old!r}"
        code = code.replace(old, new)
    nb = json.loads(release.read_text())
    nb["cells"][_solution_cell(nb["cells"])]["source"] = code
    return nb


@pytest.fixture(scope="module")
def graded(request, tmp_path_factory, selected, autograde_split):
    root = tmp_path_factory.mktemp("class")
    klass = root / "submitted"                     # one folder per student
    wanted = selected("assignment")
    if any(item.name == "test_autograd_submission_is_told_why" for item in request.session.items):
        wanted.add("b1_gd_step")
    for assignment, name in CASES:
        if assignment not in wanted:
            continue
        folder = klass / f"{assignment}-{name}" / assignment
        folder.mkdir(parents=True)
        nb = _submission(assignment, SUBMISSIONS[assignment][name][0])
        (folder / f"{assignment}.ipynb").write_text(json.dumps(nb, indent=1))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HPCLAB_SMALL", "1")
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.setenv("MPLCONFIGDIR", str(root / "mpl"))
        mp.setenv("IPYTHONDIR", str(root / "ipython"))
        scores = autograde_split(klass)
    return {(s.assignment, s.student.removeprefix(f"{s.assignment}-")): s for s in scores}


def test_every_assignment_has_two_wrong_and_one_equivalent_submission():
    for assignment, subs in SUBMISSIONS.items():
        wrong = [n for n, (_, test) in subs.items() if test is not None]
        assert len(wrong) >= 2 and any(test is None for _, test in subs.values()), assignment


@pytest.mark.parametrize(("assignment", "name"), CASES, ids=[f"{a}-{n}" for a, n in CASES])
def test_submission_scores_what_it_deserves(assignment, name, graded):
    score = graded[(assignment, name)]
    failing = {f.test for f in score.failures}
    expected = SUBMISSIONS[assignment][name][1]
    if expected is None:
        assert score.score == score.max_score and not score.failures, \
            f"a correct {name} form loses points: {score}"
    else:
        expected, pattern = expected if isinstance(expected, tuple) else (expected, None)
        assert score.score < score.max_score, f"wrong work scores full marks: {score}"
        assert expected in failing, f"{expected} should fail for {name}; failing: {failing}"
        assert all(f.message for f in score.failures), score.failures
        if pattern is not None:   # the failure says what went wrong, e.g. which rank waited
            message = next(f.message for f in score.failures if f.test == expected)
            assert re.search(pattern, message), f"{expected}: {message!r} lacks {pattern!r}"


def test_autograd_submission_is_told_why(graded):
    """The b1 autograd submission's failure message says what to do."""
    (failure,) = [f for f in graded[("b1_gd_step", "autograd_gradient")].failures
                  if f.test == "test_gradient_and_step"]
    assert "automatic differentiation" in failure.message and "matrix products" in failure.message

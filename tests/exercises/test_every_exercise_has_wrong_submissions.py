"""Every exercise is tested against wrong work, before any kernel starts (fast).

For every assignment in notebooks/exercises/source/ there is a file
wrong_submissions/<assignment>.py with at least two known-wrong submissions (each naming
the test that must catch it) and at least one correct submission in another form, and
every text a submission replaces is still in the instructor's solution cell, so a changed
solution cannot leave a wrong submission testing nothing. test_wrong_submissions.py grades
them for real (nbgrader, slow).
"""

import importlib.util
import json
import re
from pathlib import Path

import pytest

from hpclab import grading

WRONG = Path(__file__).parent / "wrong_submissions"
ASSIGNMENTS = grading._assignments(grading.EXERCISES)
MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n", re.MULTILINE)


def _submissions(assignment: str) -> dict:
    path = WRONG / f"{assignment}.py"
    assert path.is_file(), (f"{assignment} has no wrong submissions: add {path} with at least "
                            "two wrong submissions and one equivalent (see b2_adam.py)")
    spec = importlib.util.spec_from_file_location(f"coverage_{assignment}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SUBMISSIONS


def _solution_code(assignment: str) -> str:
    cells = json.loads((grading.EXERCISES / "source" / assignment /
                        f"{assignment}.ipynb").read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"
            and c["metadata"].get("nbgrader", {}).get("solution")]
    assert len(code) == 1, f"{assignment}: expected one solution code cell, found {len(code)}"
    src = code[0]["source"]
    return MARKERS.sub("", "".join(src) if isinstance(src, list) else src)


def _graded_tests(assignment: str) -> set[str]:
    cells = json.loads((grading.EXERCISES / "source" / assignment /
                        f"{assignment}.ipynb").read_text())["cells"]
    return {c["metadata"]["nbgrader"]["grade_id"] for c in cells
            if c["metadata"].get("nbgrader", {}).get("grade")}


def test_there_are_assignments():
    assert len(ASSIGNMENTS) >= 9, ASSIGNMENTS


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_two_wrong_and_one_equivalent_submission(assignment):
    subs = _submissions(assignment)
    wrong = {name: test for name, (_, test) in subs.items() if test is not None}
    equivalent = [name for name, (_, test) in subs.items() if test is None]
    assert len(wrong) >= 2, f"{assignment}: {len(wrong)} wrong submission(s), need 2: {wrong}"
    assert equivalent, f"{assignment}: no correct submission in another form"
    tests = _graded_tests(assignment)
    for name, test in wrong.items():
        test = test[0] if isinstance(test, tuple) else test
        assert test in tests, f"{assignment}/{name}: {test!r} is not a graded test ({tests})"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_submissions_still_apply_to_the_solution(assignment):
    code = _solution_code(assignment)
    for name, (replacements, _) in _submissions(assignment).items():
        assert replacements, f"{assignment}/{name} changes nothing"
        edited = code
        for old, new in replacements:
            assert old in edited, f"{assignment}/{name}: the solution no longer contains {old!r}"
            edited = edited.replace(old, new)
        assert edited != code, f"{assignment}/{name} leaves the solution as it is"

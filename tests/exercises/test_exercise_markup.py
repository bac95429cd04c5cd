"""Fast checks of the exercises' nbgrader markup (no kernel is started).

Every source notebook has solution and graded cells with unique ids and points, at least
one hidden test, and its student copy in release/ contains neither solutions nor hidden
tests. These catch a broken marker before the slow autograde tests run.
"""

import json

import pytest

from hpclab import grading

pytestmark = [pytest.mark.notebooks]

UNIT = {"a": pytest.mark.unit_a, "b": pytest.mark.unit_b, "c": pytest.mark.unit_c,
        "d": pytest.mark.unit_d}
SOURCES = sorted((grading.EXERCISES / "source").glob("*/*.ipynb"))
PARAMS = [pytest.param(p, id=p.stem, marks=UNIT[p.parent.name[0]]) for p in SOURCES]


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _src(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_every_assignment_has_a_source_and_a_release():
    assert SOURCES, "no exercise sources found"
    for p in SOURCES:
        release = grading.EXERCISES / "release" / p.parent.name / p.name
        assert release.exists(), f"{release} missing: run `hpclab grade generate`"


@pytest.mark.parametrize("path", PARAMS)
def test_source_markup(path):
    cells = _cells(path)
    meta = [c["metadata"].get("nbgrader") for c in cells]
    ids = [m["grade_id"] for m in meta if m]
    assert len(ids) == len(set(ids)), f"duplicate grade_id in {path.name}: {ids}"
    solutions = [c for c, m in zip(cells, meta) if m and m["solution"]]
    tests = [c for c, m in zip(cells, meta) if m and m["grade"]]
    assert solutions and tests
    for c in solutions:
        assert "### BEGIN SOLUTION" in _src(c) and "### END SOLUTION" in _src(c)
    for c, m in zip(cells, meta):
        if m and m["grade"]:
            assert m["points"] > 0 and m["locked"], m
    assert any("### BEGIN HIDDEN TESTS" in _src(c) for c in tests), \
        f"{path.name} has no hidden tests"
    assert any("parameters" in c["metadata"].get("tags", []) for c in cells)


@pytest.mark.parametrize("path", PARAMS)
def test_release_hides_solutions_and_hidden_tests(path):
    release = grading.EXERCISES / "release" / path.parent.name / path.name
    text = "\n".join(_src(c) for c in _cells(release))
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text, f"{release} still contains {marker!r}"
    assert "raise NotImplementedError()" in text


def test_autograde_rejects_a_folder_without_exercises(tmp_path):
    with pytest.raises(ValueError, match="known assignment"):
        grading.autograde(tmp_path)


def test_generate_rejects_an_unknown_assignment(tmp_path):
    with pytest.raises(ValueError, match="unknown assignment"):
        grading.generate(["no_such_exercise"], out=tmp_path)


def test_autograde_rejects_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        grading.autograde(tmp_path / "nowhere")

"""course/syllabus.md and the repository stay in step (fast, no kernel).

- every notebook the syllabus names exists, except those it lists as planned;
- every lecture notebook and every exercise source is named in the syllabus;
- every hpclab source file the syllabus names exists (a rename must update the syllabus);
- the session counts (per unit and in all) and the number of exercises match the notebooks:
  one session per lecture notebook.
"""

import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.notebooks, pytest.mark.unit_a, pytest.mark.unit_b,
              pytest.mark.unit_c, pytest.mark.unit_d]

REPO = Path(__file__).resolve().parents[2]
SYLLABUS = REPO / "course" / "syllabus.md"
NOTEBOOK = re.compile(r"notebooks/[\w./-]+?\.ipynb")
LIBRARY = re.compile(r"hpclab/[\w./-]+?\.py")


def _split():
    text = SYLLABUS.read_text()
    _, _, planned = text.partition("## Planned notebooks")
    planned = planned.split("\n## ")[0]
    return text, set(NOTEBOOK.findall(planned))


def test_named_notebooks_exist():
    text, planned = _split()
    missing = sorted(p for p in set(NOTEBOOK.findall(text)) - planned
                     if not (REPO / p).exists())
    assert missing == [], f"the syllabus names notebooks that do not exist: {missing}"


def test_every_lecture_and_exercise_is_in_the_syllabus():
    text, _ = _split()
    named = set(NOTEBOOK.findall(text))
    on_disk = sorted(p.relative_to(REPO).as_posix() for p in
                     [*(REPO / "notebooks" / "lectures").glob("*.ipynb"),
                      *(REPO / "notebooks" / "exercises" / "source").glob("*/*.ipynb")])
    unnamed = [p for p in on_disk if p not in named]
    assert unnamed == [], f"add these notebooks to course/syllabus.md: {unnamed}"


def test_named_library_files_exist():
    text, _ = _split()
    missing = sorted(p for p in set(LIBRARY.findall(text)) if not (REPO / p).exists())
    assert missing == [], f"the syllabus names library files that do not exist: {missing}"


def test_every_unit_has_a_lecture_and_the_syllabus_covers_the_curriculum_units():
    text, _ = _split()
    for unit in "ABCD":
        assert f"### Unit {unit}" in text
        assert re.search(rf"notebooks/lectures/{unit}\d", text), f"unit {unit} has no lecture"


def _lectures(unit=""):
    return sorted((REPO / "notebooks" / "lectures").glob(f"{unit or '[A-Z]'}[0-9]*.ipynb"))


def test_session_counts_match_the_lecture_notebooks():
    text, _ = _split()
    total = re.search(r"\*\*Format\.\*\* (\d+) sessions", text)
    assert total, "the syllabus's Format paragraph should start with 'N sessions'"
    assert int(total.group(1)) == len(_lectures()), \
        f"the syllabus says {total.group(1)} sessions; there are {len(_lectures())} lectures"
    for unit in "ABCD":
        row = re.search(rf"^\| {unit} — [^|]+\| (\d+) \(", text, re.MULTILINE)
        assert row, f"no session count for unit {unit} in the units table"
        names = [p.stem[:2] for p in _lectures(unit)]
        assert int(row.group(1)) == len(names), \
            f"unit {unit}: the syllabus says {row.group(1)} sessions, the lectures are {names}"


def test_exercise_count_matches_the_exercise_sources():
    text, _ = _split()
    said = re.search(r"(\d+) autograded exercises", text)
    sources = sorted((REPO / "notebooks" / "exercises" / "source").glob("*/*.ipynb"))
    assert said and int(said.group(1)) == len(sources), \
        f"the syllabus's exercise count should be {len(sources)}: {[p.stem for p in sources]}"

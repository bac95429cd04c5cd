"""What a submission folder holds: which student, which assignment, which notebooks.

Three layouts are accepted: one assignment's folder (`b1_gd_step/`, or a flat folder of
its notebooks), a folder with one sub-folder per assignment, and nbgrader's submitted/
layout, one folder per student holding assignment folders.

nbgrader grades a notebook by its file name in source/. A copy that JupyterLab renamed
(`b1_gd_step-Copy1.ipynb`, its *Duplicate*; `b1_gd_step (1).ipynb`, a browser download)
is graded under the expected name when it is the only candidate, with a note saying so;
when the choice is ambiguous or the file is not a notebook, `SubmissionError` says which
file to rename or ask for, before any kernel starts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .layout import notebook_names


class SubmissionError(ValueError):
    """A submission nbgrader cannot grade as it is; the message says what to change."""


@dataclass
class Notebooks:
    """The notebooks of one assignment to grade: expected name -> submitted file."""
    files: dict[str, Path]
    notes: list[str] = field(default_factory=list)


# "name-Copy1.ipynb" (JupyterLab's Duplicate), "name (1).ipynb" (a browser's download)
_COPY = re.compile(r"^(?P<stem>.+?)(-Copy\d+| \(\d+\))\.ipynb$")


def original_name(filename: str) -> str:
    """The name a renamed copy had: 'b1_gd_step-Copy1.ipynb' -> 'b1_gd_step.ipynb'."""
    m = _COPY.match(filename)
    return f"{m.group('stem')}.ipynb" if m else filename


def assignments_in(submission: Path, known: list[str], exercises: Path) -> dict[str, Path]:
    """Map assignment -> folder holding its submitted notebooks."""
    if submission.name in known and any(submission.glob("*.ipynb")):
        return {submission.name: submission}
    found = {p.name: p for p in submission.iterdir() if p.is_dir() and p.name in known}
    if found:
        return found
    # A flat folder of notebooks: recognise the assignment by the notebook names, also
    # under the names that copies get.
    names = {original_name(p.name) for p in submission.glob("*.ipynb")}
    for a in known:
        if names & set(notebook_names(a, exercises)):
            return {a: submission}
    raise SubmissionError(
        f"{submission} holds no notebook of a known assignment ({known}); pass the folder of "
        "one assignment, e.g. notebooks/exercises/release/b1_gd_step")


def students_in(submission: Path, known: list[str]) -> dict[str, Path]:
    """student -> folder, when `submission` is nbgrader's submitted/ layout; else {}."""
    if submission.name in known:
        return {}
    return {p.name: p for p in sorted(submission.iterdir())
            if p.is_dir() and p.name not in known
            and any((p / a).is_dir() for a in known)}


def _readable(path: Path) -> dict:
    try:
        nb = json.loads(path.read_text())
        if not isinstance(nb["cells"], list):
            raise TypeError("'cells' is not a list")
    except (ValueError, KeyError, TypeError) as e:
        raise SubmissionError(f"{path} is not a readable notebook ({e!r}); ask for the file "
                              "again, saved from JupyterLab") from None
    return nb


def without_duplicate_ids(nb: dict) -> tuple[dict, list[str]]:
    """`nb` with the nbgrader metadata taken off all but the last cell of each grade id,
    and those ids. JupyterLab's copy and paste of a locked cell keeps its metadata;
    nbgrader would then fail on the copy with "an old version of the nbgrader metadata
    format"."""
    seen, duplicated = set(), []
    for cell in reversed(nb["cells"]):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id is None:
            continue
        if grade_id in seen:
            del cell["metadata"]["nbgrader"]
            duplicated.append(grade_id)
        seen.add(grade_id)
    return nb, sorted(set(duplicated))


def notebooks_to_grade(name: str, folder: Path, exercises: Path) -> Notebooks:
    """The submitted notebooks nbgrader will grade, by expected name, with notes on
    renamed copies and skipped files; SubmissionError when no choice is clear."""
    expected = notebook_names(name, exercises)
    submitted = {p.name: p for p in folder.glob("*.ipynb")}
    files, notes, problems = {}, [], []
    for n in expected:
        if n in submitted:
            files[n] = submitted[n]
            continue
        copies = sorted(f for f in submitted if original_name(f) == n)
        if len(copies) == 1:
            files[n] = submitted[copies[0]]
            notes.append(f"graded {copies[0]} as {n} (a renamed copy; nbgrader grades a "
                         f"notebook by its name, {n})")
        elif copies:
            problems.append(f"{n} is missing and {len(copies)} copies could be it "
                            f"({', '.join(copies)}): rename the one to grade to {n}")
        else:
            problems.append(f"{n} is not in {folder}")
    if problems:
        others = sorted(set(submitted) - set(expected))
        found = f"; the folder holds {others}" if others else ""
        raise SubmissionError(f"assignment {name} in {folder}: nbgrader grades {expected}{found}. "
                              + "; ".join(problems))
    for expected, path in files.items():
        _, duplicated = without_duplicate_ids(_readable(path))
        if duplicated:
            notes.append(f"{path.name}: cells {', '.join(duplicated)} appear more than once "
                         "(copied and pasted); graded the last of each, the copies as "
                         "ordinary cells")
    extra = sorted(set(submitted) - {p.name for p in files.values()})
    if extra:
        notes.append(f"not graded (not a notebook of {name}): {', '.join(extra)}")
    return Notebooks(files, notes)

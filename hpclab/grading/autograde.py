"""Scores and failures: nbgrader autograde on submitted notebooks.

    hpclab grade autograde SUBMISSION [--student ID] [--keep DIR] [--course-dir DIR]

SUBMISSION is one assignment's folder, a folder of assignment folders, or nbgrader's
submitted/ layout (one folder per student). nbgrader puts the instructor's test cells
back (hidden tests included) before it runs a submission, so a student cannot edit a test
away. The result is one `Score` per student and notebook, with every graded test cell
that raised as a `Failure` (its grade id, points and error message): `report` prints them
as the instructor reads them.

By default grading happens in a throw-away nbgrader course directory; `course` (the
instructor's grading folder, see cycle.py) keeps the gradebook and the autograded
notebooks there, which `feedback` needs.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook

from .course import NbgraderError, api, generate_into, run_step
from .layout import EXERCISES, assignments
from .submissions import (
    Notebooks,
    SubmissionError,
    assignments_in,
    notebooks_to_grade,
    students_in,
    without_duplicate_ids,
)


@dataclass
class Failure:
    """A graded test cell that raised: its grade id, points and the error it printed."""
    test: str
    points: float
    message: str


@dataclass
class Score:
    """One notebook's result: points earned out of the points available.

    `notes`: what the grader did that the instructor should know (a renamed copy graded
    under the expected name, files skipped, or why the notebook was not graded at all)."""
    assignment: str
    notebook: str
    score: float
    max_score: float
    student: str = "student"
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def failures(notebook: Path) -> list[Failure]:
    """Every graded test cell of an autograded notebook that printed an error."""
    out = []
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if meta.get("grade") and errors:
            e = errors[0]
            message = f"{e.get('ename', 'Error')}: {e.get('evalue', '')}".strip().rstrip(":")
            out.append(Failure(meta.get("grade_id", "?"), float(meta.get("points", 0)),
                               message if len(message) <= 400 else message[:397] + "..."))
    return out


def _missing_tests(notebook: Path, grade_cells) -> list[Failure]:
    """The graded test cells of the assignment that the submitted notebook lacks (a
    student deleted one): nbgrader scores them zero without a word."""
    have = {c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            for c in json.loads(Path(notebook).read_text())["cells"]}
    return [Failure(c.name, float(c.max_score), "the test cell is not in the submitted "
                    "notebook (deleted?); it scores 0")
            for c in grade_cells if c.cell_type == "code" and c.name not in have]


def _plan(submission: Path, student: str, exercises: Path):
    """{student: {assignment: (folder, Notebooks or SubmissionError)}} and whether the
    submission holds several students (then one student's problem does not stop the rest)."""
    known = assignments(exercises)
    students = students_in(submission, known)
    several = bool(students)
    plan = {}
    for s, folder in (students or {student: submission}).items():
        plan[s] = {}
        for name, where in assignments_in(folder, known, exercises).items():
            try:
                plan[s][name] = (where, notebooks_to_grade(name, where, exercises))
            except SubmissionError as e:
                if not several:
                    raise
                plan[s][name] = (where, e)
    return plan, several


def _stage(where: Path, notebooks: Notebooks, dest: Path) -> None:
    """Put a submission where nbgrader reads it: dest/, the notebooks under expected names."""
    if dest.resolve() != where.resolve():
        shutil.copytree(where, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".ipynb_checkpoints", "*.ipynb"))
    dest.mkdir(parents=True, exist_ok=True)
    for expected, path in notebooks.files.items():
        nb, duplicated = without_duplicate_ids(json.loads(path.read_text()))
        if duplicated:
            (dest / expected).write_text(json.dumps(nb, indent=1))
        elif path.resolve() != (dest / expected).resolve():
            shutil.copy2(path, dest / expected)


def autograde(submission: Path, student: str = "student", exercises: Path = EXERCISES,
              keep: Path | None = None, course: Path | None = None) -> list[Score]:
    """Score a submission with nbgrader autograde; one Score per notebook and student.

    `submission`: one assignment's folder, a folder of assignment folders, or a folder of
    student folders holding assignment folders (then `student` is taken from the names).
    Each Score lists the graded tests that failed, with their error messages.
    `keep`: a folder to copy the executed (autograded) notebooks to, as
    keep/<assignment>/ for one student or keep/<student>/<assignment>/ for several.
    `course`: an nbgrader course directory to grade in (and keep the gradebook and
    autograded/ of) instead of a throw-away one; an assignment released from it is
    graded against the tests it was released with.
    """
    submission, exercises = Path(submission), Path(exercises)
    if not submission.is_dir():
        raise FileNotFoundError(f"submission folder {submission} does not exist")
    plan, several = _plan(submission, student, exercises)
    names = sorted({name for per in plan.values() for name in per})
    scores = []
    with ExitStack() as stack:
        if course is None:
            course = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="hpclab-autograde-")))
        else:
            # grade against what was released: regenerate only what the gradebook lacks
            names = [n for n in names if not (Path(course) / "release" / n).is_dir()]
        course = Path(course)
        generate_into(exercises, course, names)  # fills the gradebook with the tests
        nb = api(course)
        for s, per in plan.items():
            for name, (where, notebooks) in sorted(per.items()):
                if isinstance(notebooks, SubmissionError):
                    continue
                _stage(where, notebooks, course / "submitted" / s / name)
                with warnings.catch_warnings():  # SQLAlchemy chatter inside nbgrader
                    warnings.simplefilter("ignore")
                    result = nb.autograde(name, s, force=True, create=True)
                try:
                    run_step(result, f"autograde {name} for {s} (in {where})")
                except NbgraderError as e:
                    if not several:
                        raise
                    per[name] = (where, e)   # reported as not graded; the class goes on
        if keep is not None:
            for s in plan:
                if (course / "autograded" / s).is_dir():
                    shutil.copytree(course / "autograded" / s,
                                    Path(keep) / s if several else keep, dirs_exist_ok=True)
        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
            for s, per in plan.items():
                for name, (where, notebooks) in sorted(per.items()):
                    if isinstance(notebooks, Exception):
                        why = str(notebooks).split("\nnbgrader's log:")[0]
                        if isinstance(notebooks, NbgraderError):
                            why += (f" (nbgrader's log: `hpclab grade autograde {where}` "
                                    "grades this one alone and prints it)")
                        scores += [Score(name, n.name, 0.0, float(n.max_score), s,
                                         notes=[f"not graded: {why}"])
                                   for n in gb.find_assignment(name).notebooks]
                        continue
                    for n in gb.find_submission(name, s).notebooks:
                        executed = course / "autograded" / s / name / f"{n.name}.ipynb"
                        found = failures(executed)
                        found += _missing_tests(executed, n.notebook.grade_cells)
                        scores.append(Score(name, n.name, float(n.score), float(n.max_score),
                                            s, found, list(notebooks.notes)))
    return scores


def report(scores: list[Score]) -> str:
    """The scores as the instructor reads them: per student and notebook, the failing
    tests with their points and messages, then each student's total."""
    lines = []
    for s in scores:
        lines.append(f"{s.student}  {s.assignment}/{s.notebook}: {s.score:g} / {s.max_score:g}")
        lines += [f"    NOTE {note}" for note in s.notes]
        lines += [f"    FAILED {f.test} ({f.points:g} point{'s' if f.points != 1 else ''}): "
                  f"{f.message}" for f in s.failures]
    for student in dict.fromkeys(s.student for s in scores):
        mine = [s for s in scores if s.student == student]
        lines.append(f"total {student}: {sum(s.score for s in mine):g} / "
                     f"{sum(s.max_score for s in mine):g}")
    return "\n".join(lines)

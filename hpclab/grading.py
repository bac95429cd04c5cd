"""`hpclab grade`: student copies and autograding of the exercises, done by nbgrader.

The exercises follow nbgrader's course layout under `notebooks/exercises/`:

    source/<assignment>/<name>.ipynb    the instructor's notebook, solutions and hidden tests
    release/<assignment>/<name>.ipynb   the student copy, generated from source (committed)

Commands (each also a Python function of the same name):

    hpclab grade generate [ASSIGNMENT ...]        source/ -> release/ (nbgrader generate_assignment)
    hpclab grade check                            release/ is what generate would write now
    hpclab grade autograde SUBMISSION [--student ID]
                                                  score a submission (nbgrader autograde):
                                                  a folder of notebooks of one assignment,
                                                  a folder with one sub-folder per assignment,
                                                  or a folder with one such sub-folder per
                                                  student (nbgrader's submitted/ layout);
                                                  prints each failing test and its message

nbgrader does all the grading work: solution cells are cut between `### BEGIN SOLUTION` /
`### END SOLUTION`, hidden tests between `### BEGIN HIDDEN TESTS` / `### END HIDDEN TESTS`,
and autograde puts the instructor's test cells back before it runs the submission. This
module only builds a throw-away nbgrader course directory (so no gradebook or log lands in
the repository), calls nbgrader's Python API there and copies results back.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

EXERCISES = Path(__file__).resolve().parent.parent / "notebooks" / "exercises"
# A generous per-cell limit: the ring all-reduce exercise forks process groups.
CELL_TIMEOUT_S = 300


@dataclass
class Failure:
    """A graded test cell that raised: its grade id, points and the error it printed."""
    test: str
    points: float
    message: str


@dataclass
class Score:
    """One notebook's result: points earned out of the points available."""
    assignment: str
    notebook: str
    score: float
    max_score: float
    student: str = "student"
    failures: list[Failure] = field(default_factory=list)


class SubmissionError(ValueError):
    """A submission nbgrader cannot grade as it is; the message says what to change."""


class NbgraderError(RuntimeError):
    """nbgrader itself failed; the message carries its log (the traceback it refers to)."""


def _assignments(exercises: Path) -> list[str]:
    source = exercises / "source"
    if not source.is_dir():
        raise FileNotFoundError(f"no source/ folder under {exercises}: the exercises live in "
                                "notebooks/exercises/source/<assignment>/*.ipynb")
    return sorted(p.name for p in source.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def _api(course: Path):
    """An NbGraderAPI on a scratch course directory `course` (quiet, own gradebook)."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    # nbgrader creates its gradebook by running the `alembic` command: find the one of
    # this environment even when it was not activated (`.venv/bin/hpclab grade ...`).
    bindir = os.path.dirname(sys.executable)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")

    config = Config()
    config.CourseDirectory.root = str(course)
    config.CourseDirectory.db_url = f"sqlite:///{course / 'gradebook.db'}"
    config.ExecutePreprocessor.timeout = CELL_TIMEOUT_S
    config.Execute.timeout = CELL_TIMEOUT_S
    config.NbGraderAPI.log_level = "WARN"
    return NbGraderAPI(config=config)


def _check(result: dict, what: str) -> None:
    if not result.get("success"):
        # nbgrader's `error` ends "see the above traceback": that traceback is in `log`
        details = "\n".join(x for x in (result.get("log"), result.get("error")) if x)
        raise NbgraderError(f"nbgrader {what} failed:\n{details}")


def _generate_into(exercises: Path, course: Path, names: list[str]) -> None:
    shutil.copytree(exercises / "source", course / "source",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"), dirs_exist_ok=True)
    api = _api(course)
    for name in names:
        _check(api.generate_assignment(name, force=True, create=True), f"generate {name}")


def generate(assignments: list[str] | None = None, exercises: Path = EXERCISES,
             out: Path | None = None) -> list[Path]:
    """Write student copies of `assignments` (default: all) to `out` (default: release/)."""
    exercises = Path(exercises)
    known = _assignments(exercises)
    names = list(assignments or known)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown assignment(s) {unknown}; known: {known}")
    out = Path(out) if out is not None else exercises / "release"
    written = []
    with tempfile.TemporaryDirectory(prefix="hpclab-grade-") as tmp:
        course = Path(tmp)
        _generate_into(exercises, course, names)
        for name in names:
            target = out / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(course / "release" / name, target)
            written += sorted(target.glob("*.ipynb"))
    return written


def _cells(path: Path) -> list:
    """A notebook's cells without volatile fields, for comparing copies."""
    cells = json.loads(path.read_text())["cells"]
    for cell in cells:
        cell.pop("id", None)
    return cells


def check(exercises: Path = EXERCISES) -> list[str]:
    """Problems that make release/ differ from a fresh generate; empty when in sync."""
    exercises = Path(exercises)
    problems = []
    with tempfile.TemporaryDirectory(prefix="hpclab-check-") as tmp:
        fresh = Path(tmp) / "release"
        generate(exercises=exercises, out=fresh)
        have = {p.relative_to(exercises / "release") for p in (exercises / "release").rglob("*")
                if p.is_file() and ".ipynb_checkpoints" not in p.parts}
        want = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
        problems += [f"missing in release/: {p}" for p in sorted(want - have)]
        problems += [f"not generated from any source: release/{p}" for p in sorted(have - want)]
        for rel in sorted(want & have):
            a, b = exercises / "release" / rel, fresh / rel
            same = (_cells(a) == _cells(b)) if rel.suffix == ".ipynb" else (
                a.read_bytes() == b.read_bytes())
            if not same:
                problems.append(f"out of date: release/{rel}")
    return problems


def _submitted_assignments(submission: Path, known: list[str],
                           exercises: Path) -> dict[str, Path]:
    """Map assignment -> folder holding its submitted notebooks."""
    if submission.name in known and any(submission.glob("*.ipynb")):
        return {submission.name: submission}
    found = {p.name: p for p in submission.iterdir() if p.is_dir() and p.name in known}
    if found:
        return found
    # A flat folder of notebooks: recognise the assignment by the notebook names, also
    # under the names JupyterLab gives copies ("b1_gd_step-Copy1.ipynb").
    names = {_original_name(p.name) for p in submission.glob("*.ipynb")}
    for a in known:
        if names & {p.name for p in (exercises / "source" / a).glob("*.ipynb")}:
            return {a: submission}
    raise SubmissionError(
        f"{submission} holds no notebook of a known assignment ({known}); pass the folder of "
        "one assignment, e.g. notebooks/exercises/release/b1_gd_step")


def _students(submission: Path, known: list[str]) -> dict[str, Path]:
    """student -> folder, when `submission` is nbgrader's submitted/ layout; else {}."""
    if submission.name in known:
        return {}
    return {p.name: p for p in sorted(submission.iterdir())
            if p.is_dir() and p.name not in known
            and any((p / a).is_dir() for a in known)}


# "name-Copy1.ipynb" (JupyterLab's Duplicate), "name (1).ipynb" (a browser's download)
_COPY = re.compile(r"^(?P<stem>.+?)(-Copy\d+| \(\d+\))\.ipynb$")


def _original_name(filename: str) -> str:
    m = _COPY.match(filename)
    return f"{m.group('stem')}.ipynb" if m else filename


def _notebooks_to_grade(name: str, folder: Path, exercises: Path) -> list[Path]:
    """The submitted notebooks nbgrader will grade; a clear error if one is misnamed."""
    expected = sorted(p.name for p in (exercises / "source" / name).glob("*.ipynb"))
    submitted = {p.name: p for p in folder.glob("*.ipynb")}
    missing = [n for n in expected if n not in submitted]
    if missing:
        hints = []
        for n in missing:
            copies = sorted(f for f in submitted if _original_name(f) == n)
            if copies:
                hints.append(f"rename {folder / copies[0]} to {n} (JupyterLab names a "
                             "duplicated notebook '-Copy1'; nbgrader grades a notebook by "
                             "its name)")
            else:
                hints.append(f"{n} is not in {folder}")
        others = sorted(set(submitted) - set(expected))
        found = f"; it holds {others}" if others else ""
        raise SubmissionError(f"assignment {name}: nbgrader grades {expected}{found}. "
                              + "; ".join(hints))
    for n in expected:
        try:
            if not isinstance(json.loads(submitted[n].read_text())["cells"], list):
                raise TypeError("'cells' is not a list")
        except (ValueError, KeyError, TypeError) as e:
            raise SubmissionError(f"{submitted[n]} is not a readable notebook ({e!r}); ask for "
                                  "the file again, saved from JupyterLab") from None
    extra = sorted(set(submitted) - set(expected))
    if extra:
        warnings.warn(f"assignment {name}: not graded (not a notebook of the assignment): "
                      f"{[str(folder / n) for n in extra]}", stacklevel=3)
    return [submitted[n] for n in expected]


def _failures(notebook: Path) -> list[Failure]:
    """Every graded test cell of an autograded notebook that printed an error."""
    out = []
    for cell in json.loads(notebook.read_text())["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if meta.get("grade") and errors:
            e = errors[0]
            message = f"{e.get('ename', 'Error')}: {e.get('evalue', '')}".strip().rstrip(":")
            out.append(Failure(meta.get("grade_id", "?"), float(meta.get("points", 0)),
                               message if len(message) <= 400 else message[:397] + "..."))
    return out


def autograde(submission: Path, student: str = "student", exercises: Path = EXERCISES,
              keep: Path | None = None) -> list[Score]:
    """Score a submission with nbgrader autograde; one Score per notebook and student.

    `submission`: one assignment's folder, a folder of assignment folders, or a folder of
    student folders holding assignment folders (then `student` is taken from the names).
    Each Score lists the graded tests that failed, with their error messages.
    `keep`: a folder to copy the executed (autograded) notebooks to, as
    keep/<assignment>/ for one student or keep/<student>/<assignment>/ for several.
    """
    from nbgrader.api import Gradebook

    submission, exercises = Path(submission), Path(exercises)
    if not submission.is_dir():
        raise FileNotFoundError(f"submission folder {submission} does not exist")
    known = _assignments(exercises)
    students = _students(submission, known)
    several = bool(students)
    if not several:
        students = {student: submission}
    todo = {s: _submitted_assignments(folder, known, exercises)
            for s, folder in students.items()}
    graded = {s: {name: _notebooks_to_grade(name, folder, exercises)
                  for name, folder in assignments.items()}
              for s, assignments in todo.items()}
    names = sorted({name for assignments in todo.values() for name in assignments})
    scores = []
    with tempfile.TemporaryDirectory(prefix="hpclab-autograde-") as tmp:
        course = Path(tmp)
        _generate_into(exercises, course, names)  # fills the gradebook with the tests
        api = _api(course)
        for s, assignments in graded.items():
            for name, notebooks in sorted(assignments.items()):
                dest = course / "submitted" / s / name
                shutil.copytree(todo[s][name], dest, ignore=shutil.ignore_patterns(
                    ".ipynb_checkpoints", "*.ipynb"))
                for nb in notebooks:
                    shutil.copy2(nb, dest / nb.name)
                with warnings.catch_warnings():  # SQLAlchemy chatter inside nbgrader
                    warnings.simplefilter("ignore")
                    _check(api.autograde(name, s, force=True, create=True),
                           f"autograde {name} for {s}")
        if keep is not None:
            for s in graded:
                shutil.copytree(course / "autograded" / s, Path(keep) / s if several else keep,
                                dirs_exist_ok=True)
        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
            for s, assignments in graded.items():
                for name in sorted(assignments):
                    sub = gb.find_submission(name, s)
                    for nb in sub.notebooks:
                        executed = course / "autograded" / s / name / f"{nb.name}.ipynb"
                        scores.append(Score(name, nb.name, float(nb.score),
                                            float(nb.max_score), s, _failures(executed)))
    return scores


def report(scores: list[Score]) -> str:
    """The scores as the instructor reads them: per student and notebook, the failing tests."""
    lines = []
    for s in scores:
        lines.append(f"{s.student}  {s.assignment}/{s.notebook}: {s.score:g} / {s.max_score:g}")
        lines += [f"    FAILED {f.test} ({f.points:g} point{'s' if f.points != 1 else ''}): "
                  f"{f.message}" for f in s.failures]
    for student in dict.fromkeys(s.student for s in scores):
        mine = [s for s in scores if s.student == student]
        lines.append(f"total {student}: {sum(s.score for s in mine):g} / "
                     f"{sum(s.max_score for s in mine):g}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hpclab grade", description=__doc__.split("\n")[0])
    parser.add_argument("--exercises", type=Path, default=EXERCISES,
                        help="folder with source/ and release/ (default: the course's)")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="write student copies into release/")
    g.add_argument("assignments", nargs="*")
    sub.add_parser("check", help="fail if release/ is out of sync with source/")
    a = sub.add_parser("autograde", help="score a submission folder")
    a.add_argument("submission", type=Path)
    a.add_argument("--student", default="student")
    a.add_argument("--keep", type=Path, default=None,
                   help="copy the executed notebooks (with tracebacks) to this folder")
    args = parser.parse_args(argv)

    if args.command == "generate":
        for path in generate(args.assignments, exercises=args.exercises):
            print(f"wrote {path}")
        return 0
    if args.command == "check":
        problems = check(args.exercises)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("run `hpclab grade generate` and commit release/", file=sys.stderr)
            return 1
        print("release/ is in sync with source/")
        return 0
    try:
        scores = autograde(args.submission, args.student, exercises=args.exercises,
                           keep=args.keep)
    except (SubmissionError, FileNotFoundError) as e:
        print(f"hpclab grade autograde: {e}", file=sys.stderr)
        return 2
    except NbgraderError as e:
        print(f"hpclab grade autograde: {e}", file=sys.stderr)
        return 1
    print(report(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())

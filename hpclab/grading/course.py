"""An nbgrader course directory and the nbgrader API on it.

nbgrader works on a course directory (source/, release/, submitted/, autograded/,
feedback/ and a gradebook database). hpclab never lets nbgrader write into the
repository: it copies notebooks/exercises/source/ into a course directory of its own —
a throw-away one for `generate`, `check` and a one-off `autograde`, or the instructor's
grading folder for the release → collect → autograde → feedback cycle — and calls
nbgrader's Python API there.

Every nbgrader call returns {"success", "log", "error"}; `run_step` turns a failure into
an `NbgraderError` that carries nbgrader's log, which holds the traceback that nbgrader's
own message ("see the above traceback") refers to.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import warnings
from pathlib import Path

from nbgrader.apps import NbGraderAPI
from traitlets.config import Config

from .layout import CELL_TIMEOUT_S, COURSE_ID


class NbgraderError(RuntimeError):
    """nbgrader itself failed; the message carries its log (the traceback it refers to)."""


def api(course: Path, exchange: Path | None = None, course_id: str = COURSE_ID,
        cache: Path | None = None, extra: Config | None = None) -> NbGraderAPI:
    """An NbGraderAPI on course directory `course` (quiet, its own gradebook).

    `exchange`: the root of nbgrader's exchange directory (release, fetch, submit,
    collect go through `exchange/<course_id>/`); `cache`: where `submit` keeps a
    student's copy of what was submitted (nbgrader's default: the Jupyter data folder);
    `extra`: more nbgrader settings.
    """
    # nbgrader creates its gradebook by running the `alembic` command: find the one of
    # this environment even when it was not activated (`.venv/bin/hpclab grade ...`).
    bindir = os.path.dirname(sys.executable)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")

    config = Config()
    config.CourseDirectory.root = str(course)
    config.CourseDirectory.db_url = f"sqlite:///{Path(course) / 'gradebook.db'}"
    config.CourseDirectory.course_id = course_id
    config.ExecutePreprocessor.timeout = CELL_TIMEOUT_S
    config.Execute.timeout = CELL_TIMEOUT_S
    config.NbGraderAPI.log_level = "WARN"
    if exchange is not None:
        config.Exchange.root = str(exchange)
        # the exchange copies into the current folder unless told where
        config.Exchange.assignment_dir = str(course)
    if cache is not None:
        config.Exchange.cache = str(cache)
    if extra is not None:
        config.merge(extra)
    with warnings.catch_warnings():   # SQLAlchemy chatter inside nbgrader
        warnings.simplefilter("ignore")
        return NbGraderAPI(config=config)


# The last line of a traceback: "package.module.SomeError: what went wrong".
_RAISED = re.compile(r"^\s*(?:[A-Za-z_][\w.]*\.)?(?P<name>[A-Za-z_]\w*(?:Error|Exception)): "
                     r"(?P<message>.+)$", re.MULTILINE)


def actual_errors(log: str) -> list[str]:
    """The exceptions a log's tracebacks end with, without nbgrader's own wrapper (whose
    message only says "see the above traceback")."""
    found = [f"{m['name']}: {m['message'].strip()}" for m in _RAISED.finditer(log or "")
             if m["name"] != "NbGraderException"]
    return list(dict.fromkeys(found))


def run_step(result: dict, what: str) -> dict:
    """`result` of an nbgrader call, or NbgraderError that starts with the error that
    actually happened and carries nbgrader's log (the traceback nbgrader refers to)."""
    if not result.get("success"):
        log = "\n".join(x.strip() for x in (result.get("log"), result.get("error")) if x)
        errors = actual_errors(log) or (log.strip().splitlines() or ["(nbgrader logged nothing)"])[-1:]
        raise NbgraderError(f"nbgrader {what} failed: {errors[0]}\nnbgrader's log:\n{log}")
    return result


def generate_into(exercises: Path, course: Path, names: list[str]) -> None:
    """Copy source/ into `course` and generate the student copies of `names` there
    (nbgrader generate_assignment, which also enters the tests into the gradebook)."""
    if not names:
        return
    shutil.copytree(Path(exercises) / "source", Path(course) / "source",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"), dirs_exist_ok=True)
    nb = api(course)
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_step(nb.generate_assignment(name, force=True, create=True), f"generate {name}")

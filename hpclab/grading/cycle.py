"""nbgrader's cycle through an exchange folder: release, fetch, submit, collect, feedback.

    instructor                                   student
    hpclab grade release b1_gd_step  ─────────►  hpclab grade fetch b1_gd_step   (./b1_gd_step/)
                                                 ... works in JupyterLab ...
    hpclab grade collect b1_gd_step  ◄─────────  hpclab grade submit b1_gd_step
    hpclab grade autograde --grading out/grading
    hpclab grade feedback b1_gd_step             (out/grading/feedback/<student>/b1_gd_step/*.html)

The exchange is nbgrader's own (its default one, a folder every account can write,
/usr/local/share/nbgrader/exchange on a JupyterHub): `release` puts the student copies in
exchange/<course>/outbound/, `submit` writes a time-stamped copy to
exchange/<course>/inbound/, `collect` takes each student's latest submission into the
instructor's grading folder. The grading folder (`out/grading/`, ignored by git) is an
nbgrader course directory: source/ copied from the repository, release/, submitted/,
autograded/, feedback/ and the gradebook. Students' nbgrader commands
(`nbgrader fetch_assignment b1_gd_step --course hpclab`, `nbgrader submit ...`) work on
the same exchange.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbformat.v4 import new_output
from nbgrader.preprocessors import ClearHiddenTests, GetGrades
from nbgrader.utils import capture_log, temp_attrs
from traitlets.config import Config

from . import layout
from .course import api, generate_into, run_step
from .layout import COURSE_ID, EXERCISES, GRADING

# nbgrader's own default, set up by the administrators on a JupyterHub
DEFAULT_EXCHANGE = Path("/usr/local/share/nbgrader/exchange")


def _exchange(exchange: Path) -> Path:
    exchange = Path(exchange)
    if not exchange.is_dir():
        raise FileNotFoundError(
            f"exchange folder {exchange} does not exist: create it once, writable by the "
            f"instructor and every student (mkdir -p {exchange} && chmod 777 {exchange}), "
            "or pass --exchange DIR")
    return exchange


def _exchange_step(nb, kind: str, assignment: str, force: bool | None = None,
                   **attrs) -> dict:
    """Run one of nbgrader's exchange steps (`kind`: FetchAssignment, Submit, ...) the
    way NbGraderAPI runs its own, returning {"success", "log", "error"}."""
    with temp_attrs(nb.coursedir, assignment_id=assignment, **attrs):
        app = getattr(nb.exchange, kind)(coursedir=nb.coursedir,
                                         authenticator=nb.authenticator, parent=nb)
        if force is not None:
            app.force = force
        return capture_log(app)


def release(assignments: list[str], exchange: Path = DEFAULT_EXCHANGE,
            course_id: str = COURSE_ID, grading: Path = GRADING,
            exercises: Path = EXERCISES, force: bool = False) -> list[Path]:
    """Generate the student copies in the grading folder and release them to the
    exchange (nbgrader release_assignment); `force` replaces an earlier release."""
    exchange, grading = _exchange(exchange), Path(grading)
    names = layout.check_known(list(assignments), exercises)
    generate_into(exercises, grading, names)
    nb = api(grading, exchange, course_id)
    out = []
    for name in names:
        run_step(_exchange_step(nb, "ReleaseAssignment", name, force=force),
                 f"release_assignment {name}")
        out.append(exchange / course_id / "outbound" / name)
    return out


def fetch(assignment: str, exchange: Path = DEFAULT_EXCHANGE, into: Path = Path("."),
          course_id: str = COURSE_ID) -> Path:
    """The student's side: copy a released assignment to into/<assignment>/."""
    exchange, into = _exchange(exchange), Path(into).resolve()
    nb = api(into, exchange, course_id)
    run_step(_exchange_step(nb, "FetchAssignment", assignment),
             f"fetch_assignment {assignment}")
    return into / assignment


def submit(assignment: str, exchange: Path = DEFAULT_EXCHANGE, folder: Path = Path("."),
           course_id: str = COURSE_ID, student: str | None = None,
           cache: Path | None = None) -> Path:
    """The student's side: submit folder/<assignment>/ to the exchange (a time-stamped
    copy in inbound/). `student`: the id to submit as (default: the login name)."""
    exchange, folder = _exchange(exchange), Path(folder).resolve()
    if not (folder / assignment).is_dir():
        raise FileNotFoundError(f"{folder / assignment} does not exist: run "
                                f"`hpclab grade fetch {assignment}` in {folder} first")
    nb = api(folder, exchange, course_id, cache=cache)
    run_step(_exchange_step(nb, "Submit", assignment, student_id=student or "*"),
             f"submit {assignment}")
    return exchange / course_id / "inbound"


def collect(assignment: str, exchange: Path = DEFAULT_EXCHANGE, course_id: str = COURSE_ID,
            grading: Path = GRADING, exercises: Path = EXERCISES) -> list[str]:
    """Copy each student's latest submission of `assignment` from the exchange to
    grading/submitted/<student>/<assignment>/; the students collected, sorted."""
    exchange, grading = _exchange(exchange), Path(grading)
    layout.check_known([assignment], exercises)
    if not (grading / "gradebook.db").exists():
        generate_into(exercises, grading, [assignment])   # the gradebook knows the assignment
    nb = api(grading, exchange, course_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_step(nb.collect(assignment), f"collect {assignment}")
    return sorted(p.parent.name for p in (grading / "submitted").glob(f"*/{assignment}"))


class _HideHiddenTests(ClearHiddenTests):
    """Feedback without the hidden tests: their code goes, and so do the traceback frames
    that would quote it; the error line (name and message) stays."""

    def preprocess_cell(self, cell, resources, cell_index):
        had_hidden = self.begin_test_delimeter in cell.source
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if had_hidden and cell.cell_type == "code":
            cell.outputs = [new_output("error", ename=o.ename, evalue=o.evalue,
                                       traceback=[f"{o.ename}: {o.evalue}"])
                            if o.output_type == "error" else o for o in cell.outputs]
        return cell, resources


def feedback(assignment: str, grading: Path = GRADING, student: str | None = None,
             hide_hidden_tests: bool = True) -> list[Path]:
    """HTML feedback per student from the autograded notebooks (nbgrader
    generate_feedback): grading/feedback/<student>/<assignment>/<notebook>.html, each
    test cell with its score and the error it raised. `hide_hidden_tests` (default)
    leaves the hidden tests' code out, so they can be used again next term."""
    grading = Path(grading)
    if not (grading / "autograded").is_dir():
        raise FileNotFoundError(f"nothing autograded in {grading}: run `hpclab grade "
                                f"autograde --grading {grading}` first")
    extra = Config()
    if hide_hidden_tests:
        extra.GenerateFeedback.preprocessors = [GetGrades, _HideHiddenTests,
                                                CSSHTMLHeaderPreprocessor]
    nb = api(grading, extra=extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_step(nb.generate_feedback(assignment, student), f"generate_feedback {assignment}")
    who = student or "*"
    return sorted((grading / "feedback").glob(f"{who}/{assignment}/*.html"))


"""Exercises graded by nbgrader: student copies, the release → collect → feedback cycle,
autograding, and the student repository. The command is `hpclab grade` (cli.py).

    layout.py       where the exercises live; what an assignment is
    course.py       an nbgrader course directory and the nbgrader API on it
    generate.py     student copies: source/ -> release/, and the check that they are in sync
    submissions.py  what a submission folder holds (students, assignments, renamed copies)
    autograde.py    scores and failing tests (nbgrader autograde), and the report
    cycle.py        release, fetch, submit, collect and feedback through nbgrader's exchange
    publish.py      the student repository, and the check that it leaks no solution
    cli.py          `hpclab grade ...`

nbgrader does all the grading work: solution cells are cut between `### BEGIN SOLUTION` /
`### END SOLUTION`, hidden tests between `### BEGIN HIDDEN TESTS` / `### END HIDDEN TESTS`,
and autograde puts the instructor's test cells back before it runs the submission. This
package builds nbgrader course directories outside the repository (no gradebook or log
lands in it), calls nbgrader's Python API there and copies results back.
"""

from .autograde import Failure, Score, autograde, report
from .autograde import failures as _failures  # noqa: F401  (tests use these two names)
from .course import NbgraderError
from .cycle import collect, feedback, fetch, release, submit
from .generate import check, generate
from .layout import CELL_TIMEOUT_S, COURSE_ID, EXERCISES, GRADING
from .layout import assignments as _assignments  # noqa: F401
from .publish import leaks, publish
from .submissions import SubmissionError

__all__ = ["CELL_TIMEOUT_S", "COURSE_ID", "EXERCISES", "GRADING", "Failure", "NbgraderError",
           "Score", "SubmissionError", "autograde", "check", "collect", "feedback", "fetch",
           "generate", "leaks", "publish", "release", "report", "submit"]

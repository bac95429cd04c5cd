"""Where the exercises live and what an assignment is.

The exercises follow nbgrader's course layout under `notebooks/exercises/`:

    source/<assignment>/<name>.ipynb    the instructor's notebook, solutions and hidden tests
    release/<assignment>/<name>.ipynb   the student copy, generated from source (committed)

An assignment is a folder of source/ that holds at least one notebook. Everything that
grading produces (gradebook, submissions, autograded notebooks, feedback) lives outside
the repository's tracked files: in a throw-away folder, or in the instructor's grading
folder (`out/grading/` by default, ignored by git).
"""

from __future__ import annotations

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
EXERCISES = REPOSITORY / "notebooks" / "exercises"
GRADING = REPOSITORY / "out" / "grading"
# nbgrader's exchange needs a course id: the folder name under the exchange root.
COURSE_ID = "hpclab"
# A generous per-cell limit: the ring all-reduce exercise forks process groups.
CELL_TIMEOUT_S = 300


def assignments(exercises: Path = EXERCISES) -> list[str]:
    """The assignments of `exercises`: source/ folders that hold a notebook, sorted."""
    source = Path(exercises) / "source"
    if not source.is_dir():
        raise FileNotFoundError(f"no source/ folder under {exercises}: the exercises live in "
                                "notebooks/exercises/source/<assignment>/*.ipynb")
    return sorted(p.name for p in source.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def check_known(names: list[str], exercises: Path = EXERCISES) -> list[str]:
    """`names`, after checking that each is an assignment of `exercises`."""
    known = assignments(exercises)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown assignment(s) {unknown}; known: {known}")
    return list(names)


def notebook_names(name: str, exercises: Path = EXERCISES) -> list[str]:
    """The notebook file names of assignment `name`, as nbgrader grades them."""
    return sorted(p.name for p in (Path(exercises) / "source" / name).glob("*.ipynb"))

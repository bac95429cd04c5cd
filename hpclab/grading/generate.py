"""Student copies: release/ generated from source/ by nbgrader generate_assignment.

    hpclab grade generate [ASSIGNMENT ...]   source/ -> release/ (commit the result)
    hpclab grade check                       release/ is what generate would write now

nbgrader cuts solution code between `### BEGIN SOLUTION` / `### END SOLUTION` (leaving
`# YOUR CODE HERE`) and hidden tests between `### BEGIN HIDDEN TESTS` /
`### END HIDDEN TESTS`; the copies are never edited by hand.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from . import layout
from .course import generate_into
from .layout import EXERCISES


def generate(assignments: list[str] | None = None, exercises: Path = EXERCISES,
             out: Path | None = None) -> list[Path]:
    """Write student copies of the assignments (default: all) to `out` (default: release/)."""
    exercises = Path(exercises)
    names = layout.check_known(list(assignments or layout.assignments(exercises)), exercises)
    out = Path(out) if out is not None else exercises / "release"
    written = []
    with tempfile.TemporaryDirectory(prefix="hpclab-grade-") as tmp:
        course = Path(tmp)
        generate_into(exercises, course, names)
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

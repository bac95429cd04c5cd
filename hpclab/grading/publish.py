"""The student repository: what students clone, with no solution and no hidden test in it.

    hpclab grade publish OUT        write the student repository into OUT (a new folder)

It holds the library (`hpclab/`, which the lectures and exercises import), every entry
of notebooks/ but the exercises' source/ (lectures, demos, release/ copies — what the
student's `make lab` shows), the course notes and syllabus, pyproject.toml, the Makefile
and a README for students. Left out: notebooks/exercises/source/ (solutions, hidden
tests), tests/ (the graders' wrong submissions are built from the solutions), the
instructor guide (answers to the check-yourself questions) and course/deploy/.
Only files git tracks or would track are copied, so nothing ignored (a venv, out/) travels.

`leaks(OUT)` lists what must not be there: a notebook with nbgrader's solution or
hidden-test markers, and any file holding every code line of a solution or hidden-test
block of a source notebook.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from .layout import EXERCISES, REPOSITORY

# Top-level paths of the repository that students get (notebooks/ is filtered below).
STUDENT_PATHS = ("hpclab", "notebooks", "course/syllabus.md", "course/notes", "course/library",
                 "course/glossary-en-zh.md", "course/architecture.md", "pyproject.toml",
                 "Makefile", ".gitignore")
NOT_FOR_STUDENTS = ("notebooks/exercises/source",)
MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS",
           "### END HIDDEN TESTS")
_BLOCK = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)[^\n]*\n(.*?)^[ \t]*### END \1",
                    re.DOTALL | re.MULTILINE)

README = """# hpclab — the course repository for students

Distributed deep-learning training from the ground up: lectures in `notebooks/lectures/`,
demos in `notebooks/demos/`, exercises in `notebooks/exercises/release/`, notes with the
formulas in `course/notes/`, the order of the sessions in `course/syllabus.md`.

    make lab                  # set up, then JupyterLab on the course (2 local engines)

Work on an exercise in the lab's `exercises/` folder (your working copy; the files of
this repository stay as they were). To hand it in through the course's exchange:

    hpclab grade fetch b1_gd_step --exchange EXCHANGE     # ./b1_gd_step/, a fresh copy
    hpclab grade submit b1_gd_step --exchange EXCHANGE    # hand in ./b1_gd_step/

(or nbgrader's own `nbgrader fetch_assignment` / `nbgrader submit` with `--course hpclab`);
your instructor tells you the EXCHANGE folder.
"""


def _tracked(repository: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                          "--exclude-standard", "--", *STUDENT_PATHS], cwd=repository,
                         capture_output=True, check=True, timeout=60).stdout.decode()
    return [p for p in out.split("\0") if p]


def _for_students(rel: str) -> bool:
    return not any(rel == p or rel.startswith(p + "/") for p in NOT_FOR_STUDENTS)


def publish(out: Path, repository: Path = REPOSITORY) -> list[Path]:
    """Write the student repository into `out` (must not exist yet); the files written."""
    out, repository = Path(out), Path(repository)
    if out.exists():
        raise FileExistsError(f"{out} exists: publish writes a new folder (remove it, or "
                              "pass another path)")
    written = []
    for rel in _tracked(repository):
        src = repository / rel
        if not _for_students(rel) or not src.is_file():
            continue
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
        written.append(dest)
    (out / "README.md").write_text(README)
    written.append(out / "README.md")
    problems = leaks(out)
    if problems:
        shutil.rmtree(out)
        raise RuntimeError("the student repository would leak solutions; nothing written:\n"
                           + "\n".join(problems))
    return written


def _text(path: Path) -> str:
    try:
        text = path.read_text()
    except (UnicodeDecodeError, OSError):
        return ""
    if path.suffix == ".ipynb":
        try:
            cells = json.loads(text)["cells"]
            return text + "\n" + "\n".join("".join(c.get("source", "")) for c in cells)
        except (ValueError, KeyError, TypeError):
            return text
    return text


def _lines(block: str) -> list[str]:
    return [s for s in (line.strip() for line in block.splitlines()) if s and not s.startswith("#")]


def secret_blocks(exercises: Path = EXERCISES) -> list[tuple[str, list[str]]]:
    """(where, code lines) of every solution and hidden-test block of the source notebooks."""
    found = []
    for nb in sorted((Path(exercises) / "source").glob("*/*.ipynb")):
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            source = "".join(cell.get("source", ""))
            for m in _BLOCK.finditer(source):
                if _lines(m.group(2)):
                    found.append((f"{nb.name} cell {i} ({m.group(1).lower()})", _lines(m.group(2))))
    return found


def leaks(folder: Path, exercises: Path = EXERCISES) -> list[str]:
    """What in `folder` gives solutions or hidden tests away; empty when nothing does."""
    blocks = secret_blocks(exercises)
    problems = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        text = _text(path)
        if path.suffix == ".ipynb":
            problems += [f"{path}: contains {m!r}" for m in MARKERS if m in text]
        have = {line.strip() for line in text.splitlines()}
        problems += [f"{path}: holds the code of {where}" for where, lines in blocks
                     if all(line in have for line in lines)]
    return problems

"""`hpclab lab`: JupyterLab on the course notebooks, with the engine count for `connect()`.

    hpclab lab --engines 2                 # the student's lab; prints a URL with a token
    hpclab lab --engines 4 --port 8890 --no-browser
    hpclab lab --instructor                # sources, solutions and the nbgrader tools

The student's lab (`make lab`) shows the lectures, the demos and the *student copies* of
the exercises only: its root is a folder of links, out/lab/student/, in which exercises/
is out/lab/exercises/, the students' working copy of notebooks/exercises/release/ (saves
never touch the committed copies) — source/, with every solution and hidden test, is
not in it — and nbgrader's JupyterLab extension (Create Assignment, Formgrader, Validate)
and server extensions are switched off through a config folder of its own
(JUPYTER_CONFIG_PATH=out/lab/student-config). The instructor's lab
(`hpclab lab --instructor`, `make lab-instructor`) opens notebooks/ itself with nbgrader
on, its course directory set to notebooks/exercises/.

Both open the course's entry page first, notebooks/START_HERE.ipynb (what to open, in
which order), as JupyterLab's default URL (/lab/tree/START_HERE.ipynb). Both set
HPCLAB_ENGINES=<n> (the default size of `hpclab.connect()` in the notebooks),
listen on localhost only, add --allow-root when run as root, and turn off JupyterLab's
news pop-up. Any other argument is passed to `jupyter lab` (e.g. --ServerApp.token=...).

The process becomes the Jupyter server itself (exec), so stopping it (Ctrl-C, SIGTERM)
stops everything it started: no orphan servers or kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

NEWS_OFF = {"@jupyterlab/apputils-extension:notification":
            {"fetchNews": "false", "checkForUpdates": False}}
NBGRADER_LABEXTENSION = "@jupyter/nbgrader"
ENTRY_PAGE = "START_HERE.ipynb"     # notebooks/START_HERE.ipynb: what to open, in which order
NBGRADER_SERVER_EXTENSIONS = [f"nbgrader.server_extensions.{name}" for name in
                              ("formgrader", "validate_assignment", "assignment_list",
                               "course_list")]


def notebook_root() -> Path:
    """./notebooks, else the repository's notebooks/ (editable install), else cwd."""
    for candidate in (Path.cwd() / "notebooks",
                      Path(__file__).resolve().parents[1] / "notebooks"):
        if candidate.is_dir():
            return candidate
    return Path.cwd()


def write_settings_overrides(prefix: Path = Path(sys.prefix)) -> Path:
    """Turn off the "news" toast in <prefix>/share/jupyter/lab/settings/overrides.json,
    adding our entry only where the file does not set that plugin already."""
    path = prefix / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    try:
        current = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return path   # someone's hand-edited file: leave it alone
    if not isinstance(current, dict) or all(k in current for k in NEWS_OFF):
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**NEWS_OFF, **current}, indent=2))
    except OSError as e:   # a read-only system install: the toast is harmless
        print(f"[lab] could not write {path} ({e}); JupyterLab may show a news pop-up")
    return path


def student_view(notebooks: Path, dest: Path) -> Path:
    """A folder of links to what students may open: every entry of `notebooks` but
    exercises/, which links to exercises/release/ (no source/). Rebuilt on every call."""
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)   # removes the links, never what they point to
    elif dest.exists() or dest.is_symlink():
        dest.unlink()
    dest.mkdir(parents=True)
    for entry in sorted(notebooks.iterdir()):
        if entry.name.startswith("."):
            continue
        target = (working_copy(entry / "release", dest.parent / "exercises")
                  if entry.name == "exercises" else entry)
        if target.exists():
            (dest / entry.name).symlink_to(target.resolve(), target_is_directory=target.is_dir())
    return dest


def working_copy(release: Path, work: Path) -> Path:
    """The students' exercises: a copy of release/ in `work`, which their saves go to (and
    nbgrader's Validate, which saves first), so the committed copies stay as generated.
    Files that `work` lacks are copied from release/; nothing in it is overwritten."""
    if not release.is_dir():
        return release
    work.mkdir(parents=True, exist_ok=True)
    for src in sorted(release.rglob("*")):
        dest = work / src.relative_to(release)
        if ".ipynb_checkpoints" in src.parts or dest.exists():
            continue
        if src.is_dir():
            dest.mkdir(parents=True)
        else:
            shutil.copy2(src, dest)
    return work


def student_config(dest: Path) -> Path:
    """A Jupyter config folder that switches nbgrader off (lab and server extensions)."""
    (dest / "labconfig").mkdir(parents=True, exist_ok=True)
    (dest / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {NBGRADER_LABEXTENSION: True}}, indent=2))
    (dest / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": dict.fromkeys(NBGRADER_SERVER_EXTENSIONS, False)}},
        indent=2))
    return dest


def build_command(args, extra: list[str]) -> tuple[list[str], dict]:
    """The `jupyter lab` command line and environment: the student's lab, or with
    `args.instructor` the instructor's (notebooks/ itself, nbgrader on)."""
    notebooks = notebook_root()
    env = {**os.environ, "HPCLAB_ENGINES": str(args.engines)}
    if getattr(args, "instructor", False):
        root = notebooks
        flags = []
        if (notebooks / "exercises" / "source").is_dir():
            flags.append(f"--CourseDirectory.root={notebooks / 'exercises'}")
    else:
        out = notebooks.parent / "out" / "lab"
        root = student_view(notebooks, out / "student")
        config = student_config(out / "student-config")
        env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
            p for p in (str(config), os.environ.get("JUPYTER_CONFIG_PATH")) if p)
        flags = []
    if (root / ENTRY_PAGE).exists():
        flags.append(f"--LabApp.default_url=/lab/tree/{ENTRY_PAGE}")
    cmd = [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=localhost",
           f"--ServerApp.root_dir={root}", *flags]
    if args.port is not None:
        # Fail loudly on a busy port rather than silently moving to another one.
        cmd += [f"--ServerApp.port={args.port}", "--ServerApp.port_retries=0"]
    if args.no_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd + extra, env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hpclab lab", description=__doc__.split("\n")[0])
    parser.add_argument("--engines", type=int, default=int(os.environ.get("HPCLAB_ENGINES", "2")),
                        help="default number of engines for hpclab.connect() (default 2)")
    parser.add_argument("--port", type=int, default=None, help="port (default: 8888 or next free)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    parser.add_argument("--instructor", action="store_true",
                        help="open the exercise sources (solutions) with the nbgrader tools")
    args, extra = parser.parse_known_args(argv)
    if args.engines < 1:
        parser.error(f"--engines must be >= 1, got {args.engines}")
    if args.port is not None and not 0 < args.port < 65536:
        parser.error(f"--port must be in 1..65535, got {args.port}")
    write_settings_overrides()
    cmd, env = build_command(args, extra)
    root = next(c.split("=", 1)[1] for c in cmd if c.startswith("--ServerApp.root_dir="))
    who = ("instructor: sources, solutions and nbgrader" if args.instructor else
           "student: lectures, demos and the exercises' student copies")
    print(f"[lab] JupyterLab ({who}) on {root} with HPCLAB_ENGINES={args.engines}\n"
          "[lab] open the http://localhost:...?token=... URL printed below in a browser\n"
          "[lab]   (remote machine: ssh -L PORT:localhost:PORT user@host, then open it)\n"
          "[lab] stop it with Ctrl-C twice (or `kill` this process id: "
          f"{os.getpid()})", flush=True)
    os.execve(sys.executable, cmd, env)
    return 0   # not reached: exec replaces this process

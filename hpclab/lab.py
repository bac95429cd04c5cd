"""`hpclab lab`: JupyterLab on the course notebooks, with the engine count for `connect()`.

    hpclab lab --engines 2                 # prints a URL with a token; Ctrl-C twice stops it
    hpclab lab --engines 4 --port 8890 --no-browser

It sets HPCLAB_ENGINES=<n> (the default size of `hpclab.connect()` in the notebooks),
opens ./notebooks (or the repository's notebooks/ folder, or the current folder), listens
on localhost only, adds --allow-root when run as root, and turns off JupyterLab's news
pop-up. Any other argument is passed to `jupyter lab` (e.g. --ServerApp.token=...).

The process becomes the Jupyter server itself (exec), so stopping it (Ctrl-C, SIGTERM)
stops everything it started: no orphan servers or kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

NEWS_OFF = {"@jupyterlab/apputils-extension:notification":
            {"fetchNews": "false", "checkForUpdates": False}}


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


def build_command(args, extra: list[str]) -> tuple[list[str], dict]:
    root = notebook_root()
    cmd = [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=localhost",
           f"--ServerApp.root_dir={root}"]
    if args.port is not None:
        # Fail loudly on a busy port rather than silently moving to another one.
        cmd += [f"--ServerApp.port={args.port}", "--ServerApp.port_retries=0"]
    if args.no_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    env = {**os.environ, "HPCLAB_ENGINES": str(args.engines)}
    return cmd + extra, env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hpclab lab", description=__doc__.split("\n")[0])
    parser.add_argument("--engines", type=int, default=int(os.environ.get("HPCLAB_ENGINES", "2")),
                        help="default number of engines for hpclab.connect() (default 2)")
    parser.add_argument("--port", type=int, default=None, help="port (default: 8888 or next free)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    args, extra = parser.parse_known_args(argv)
    if args.engines < 1:
        parser.error(f"--engines must be >= 1, got {args.engines}")
    if args.port is not None and not 0 < args.port < 65536:
        parser.error(f"--port must be in 1..65535, got {args.port}")
    write_settings_overrides()
    cmd, env = build_command(args, extra)
    print(f"[lab] JupyterLab on {notebook_root()} with HPCLAB_ENGINES={args.engines}\n"
          "[lab] open the http://localhost:...?token=... URL printed below in a browser\n"
          "[lab]   (remote machine: ssh -L PORT:localhost:PORT user@host, then open it)\n"
          "[lab] stop it with Ctrl-C twice (or `kill` this process id: "
          f"{os.getpid()})", flush=True)
    os.execve(sys.executable, cmd, env)
    return 0   # not reached: exec replaces this process

"""Connection files readable by their owner only.

A connection file (ipyparallel's ipcontroller-*.json, Jupyter's kernel-*.json) holds the
key that lets anyone who reads it run code as you on every engine. `ensure_private(path)`
fixes (or refuses) one file; `secure_profile(profile_dir)` every key-holding file of an
ipyparallel profile. `hpclab.connect` applies them to the files it starts or attaches with;
`hpclab doctor` reports what is left.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from hpclab.cluster.errors import ClusterError


def _holds_key(path: Path) -> bool:
    try:
        return bool(json.loads(path.read_text()).get("key"))
    except (OSError, ValueError, AttributeError):
        return False


def ensure_private(path: str | os.PathLike, fix: bool = True) -> bool:
    """Make `path` mode 0600 if it is ours; True if it was changed. Raise if it cannot be.

    A file readable by group or others that belongs to someone else is an error: its key
    may already be known, so using it is unsafe.
    """
    path = Path(path)
    st = path.stat()
    if not st.st_mode & 0o077:
        return False
    mode = oct(stat.S_IMODE(st.st_mode))
    if not fix or st.st_uid != os.geteuid():
        raise ClusterError(f"connection file {path} is readable by others (mode {mode}); "
                           f"its key lets anyone run code on your engines: `chmod 600 {path}`"
                           + ("" if st.st_uid == os.geteuid() else
                              " (it belongs to another user: ask them, and do not use it)"))
    path.chmod(0o600)
    return True


def key_files(profile_dir: str | os.PathLike) -> list[Path]:
    """The files of an ipyparallel profile (and Jupyter's runtime dir) that hold a key."""
    files = sorted(Path(profile_dir, "security").glob("*.json"))
    try:
        from jupyter_core.paths import jupyter_runtime_dir
        files += sorted(Path(jupyter_runtime_dir()).glob("kernel-*.json"))
    except ImportError:
        pass
    return [f for f in files if _holds_key(f)]


def secure_profile(profile_dir: str | os.PathLike, fix: bool = True) -> list[str]:
    """Problems left with key files of `profile_dir` (after fixing ours when fix=True)."""
    problems = []
    security = Path(profile_dir, "security")
    if security.is_dir() and stat.S_IMODE(security.stat().st_mode) & 0o077:
        if fix and security.stat().st_uid == os.geteuid():
            security.chmod(0o700)
        else:
            problems.append(f"{security} is open to others: `chmod 700 {security}`")
    for f in key_files(profile_dir):
        try:
            ensure_private(f, fix=fix)
        except ClusterError as exc:
            problems.append(str(exc))
        except FileNotFoundError:   # a cluster that stopped meanwhile
            pass
    return problems


def default_profile_dir() -> Path:
    from IPython.paths import get_ipython_dir
    return Path(get_ipython_dir()) / "profile_default"

"""Fixtures for the cluster tests: an isolated IPython dir and one shared 2-engine cluster.

Starting engines costs seconds (each imports torch), so tests share `cluster2` where they
can; tests that break a cluster on purpose (SIGKILL) start their own.
"""

from __future__ import annotations

import os

import psutil
import pytest


@pytest.fixture(scope="session", autouse=True)
def ipython_dir(tmp_path_factory):
    """Profiles and connection files of this session live in a temp dir (engines inherit)."""
    old = os.environ.get("IPYTHONDIR")
    path = tmp_path_factory.mktemp("ipython")
    os.environ["IPYTHONDIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("IPYTHONDIR", None)
    else:
        os.environ["IPYTHONDIR"] = old


def _ipp_processes() -> set[int]:
    """pids of ipyparallel processes (controller, engines, nannies) started from this test
    process, including re-parented ones (a nanny outlives a SIGKILLed engine's parent)."""
    me = os.getpid()
    out = set()
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if "ipyparallel" not in cmd:
                continue
            # our engines inherit IPYTHONDIR from this test session: a marker unique to us
            env = proc.info["environ"] or {}
            if env.get("IPYTHONDIR") == os.environ.get("IPYTHONDIR") or me in [
                    p.pid for p in proc.parents()]:
                out.add(proc.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


@pytest.fixture(scope="session")
def ipp_processes():
    """A function listing this session's ipyparallel processes (to count orphans)."""
    return _ipp_processes


@pytest.fixture(scope="session")
def cluster2(ipython_dir):
    import hpclab
    cluster = hpclab.connect(n=2, timeout=60)
    yield cluster
    cluster.close()

"""A real single-node Slurm for this directory's tests (session fixture `slurm`).

`.ci/slurm/start` installs slurm-wlm + munge if missing and starts munged, slurmctld and
slurmd on their own ports (16817/16818), or reuses a Slurm it started earlier; the fixture
exports the SLURM_CONF it prints and, at the end of the session, runs `.ci/slurm/stop` if
(and only if) this session started the daemons. Jobs left by a failing test are cancelled.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / ".ci" / "slurm"


def squeue_names() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True,
                         timeout=30, check=False)
    return out.stdout.split()


def wait_until_gone(job_name: str, timeout: float = 60.0) -> bool:
    """True once no job called job_name is in the queue (COMPLETING counts as present)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if job_name not in squeue_names():
            return True
        time.sleep(0.5)
    return False


@pytest.fixture(scope="session")
def slurm():
    """SLURM_CONF of a running single-node Slurm; partition 'debug'."""
    started = subprocess.run([str(CI / "start")], capture_output=True, text=True,
                             timeout=600, check=False)
    if started.returncode != 0:
        pytest.fail(f".ci/slurm/start failed (exit {started.returncode}):\n"
                    f"{started.stdout}\n{started.stderr}")
    conf = started.stdout.strip().splitlines()[-1].split("=", 1)[1]
    ours = "reusing" not in started.stderr
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    try:
        yield conf
    finally:
        left = [n for n in squeue_names() if n.startswith("hpclab-")]
        for name in left:
            subprocess.run(["scancel", "--name", name], timeout=30, check=False)
        if ours:
            subprocess.run([str(CI / "stop")], timeout=120, check=False)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old

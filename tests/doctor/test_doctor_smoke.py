"""`hpclab doctor` end to end: its 2-engine all-reduce smoke test on real local engines."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.unit_a, pytest.mark.cluster, pytest.mark.slow]   # ~30 s on 2 busy cores


def test_doctor_runs_a_two_engine_all_reduce():
    out = subprocess.run([sys.executable, "-m", "hpclab", "doctor", "--timeout", "120"],
                         capture_output=True, text=True, timeout=280, check=False)
    lines = out.stdout.splitlines()
    smoke = [line for line in lines if "smoke test" in line]
    assert smoke and smoke[0].startswith("PASS"), out.stdout + out.stderr
    assert "all-reduce 1+2=3 on both" in smoke[0]
    failed = [line for line in lines if line.startswith("FAIL")]
    assert out.returncode == (1 if failed else 0), out.stdout

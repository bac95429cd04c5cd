"""`hpclab demo`: a small in-process run of every section, and the real command end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import pytest

from hpclab.demo import SECTIONS, DemoConfig, run

pytestmark = [pytest.mark.unit_b]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The sections that run on one process; the data-parallel one starts engines and is
# covered by the end-to-end test below.
SINGLE_PROCESS = [s for s in SECTIONS if s[0] in ("paths_2d", "regression", "digits",
                                                   "transformer")]


def check_outputs(out: Path, sections) -> dict:
    """Each section NAME wrote a real NAME.png; summary.json lists the sections in order."""
    for name, _ in sections:
        path = out / f"{name}.png"
        assert path.read_bytes()[:8] == PNG_MAGIC, name
        h, w = mpimg.imread(path).shape[:2]
        assert h >= 200 and w >= 300, (name, h, w)
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["sections"]) == [name for name, _ in sections]
    return summary


def test_single_process_sections_run_small(tmp_path):
    assert len(SINGLE_PROCESS) == 4
    cfg = DemoConfig(out=tmp_path, engines=3, paths_steps=50, regression_steps=30,
                     digits_epochs=2, transformer_steps=5)
    summary = run(cfg, sections=SINGLE_PROCESS)
    check_outputs(tmp_path, SINGLE_PROCESS)
    assert summary["config"]["engines"] == 3
    assert summary["sections"]["transformer"]["steps"] == 5
    assert summary["sections"]["transformer"]["tokens_per_s"] > 0
    assert (tmp_path / "digits_mlp.pt").exists()


@pytest.mark.slow
@pytest.mark.cluster
def test_hpclab_demo_command(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "hpclab", "demo", "--engines", "2",
                           "--out", str(out)], check=False, capture_output=True, text=True,
                          timeout=480, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(out.resolve()) in proc.stdout
    summary = check_outputs(out, SECTIONS)
    s = summary["sections"]
    assert s["regression"]["max_abs_difference"] < 1e-4       # GD reached least squares
    assert s["digits"]["inference_accuracy"] > 0.85
    assert s["transformer"]["val_loss"] < 3.0                 # from ln(63) ≈ 4.1


def test_bad_engine_count_is_rejected():
    proc = subprocess.run([sys.executable, "-m", "hpclab", "demo", "--engines", "0"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--engines must be >= 1, got 0" in proc.stderr

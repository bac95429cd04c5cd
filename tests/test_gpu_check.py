"""`make gpu-check` on CPU with small sizes: every step reports, the CPU-capable ones run,
the CUDA-only ones skip by name, and a failing step does not stop the ones after it.
(The torch.compile'd variants are left out to keep this under a minute; the compiled
fused Adam is checked in tests/optim/test_fused_adam.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hpclab.gpu_check import NEEDS_CUDA, STEPS

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_small_run_reports_every_step(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "hpclab.gpu_check", "--device", "cpu",
                           "--small", "--no-compile", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, check=False, capture_output=True, text=True, timeout=300)
    results = {r["step"]: r for r in json.loads((tmp_path / "gpu-check.json").read_text())}
    assert list(results) == list(STEPS)
    assert proc.returncode == (1 if any(r["status"] == "FAIL" for r in results.values())
                               else 0), proc.stdout + proc.stderr
    for r in results.values():
        assert r["status"] in ("PASS", "FAIL", "SKIP") and r["reason"] and r["seconds"] >= 0
    for name in ("gpu-tier", "nccl"):
        assert results[name]["status"] == "SKIP"
        assert results[name]["reason"] == NEEDS_CUDA
    assert results["lecture"]["status"] == "SKIP"
    assert "HPCLAB_SMALL" in results["lecture"]["reason"]

    optim = results["optim"]
    assert optim["status"] == "PASS", optim["reason"]
    assert optim["figures"]["equal_to_torch"] is True
    for name in ("Adam", "AdamW"):
        fig = optim["figures"][f"{name} 0.2M"]
        assert 0 < fig["bandwidth_fraction"] and fig["time_vs_torch_fused"] > 0

    memory = results["memory"]
    assert memory["status"] in ("PASS", "FAIL")       # FAIL: off by more than 10%
    for recompute in ("none", "full"):
        fig = memory["figures"][recompute]
        assert fig["measured_bytes"] > 0 and fig["predicted_bytes"] > 0
        held, predicted = fig["states_held"], fig["states_predicted"]
        assert held["parameters"] == predicted["parameters"] == 4 * fig["psi"]

    mfu = results["mfu"]
    assert mfu["status"] == "PASS", mfu["reason"]
    assert mfu["figures"]["eager"]["tokens_per_s"] > 0
    assert mfu["figures"]["eager"]["mfu"] is None       # no peak FLOP/s for a CPU

    text = (tmp_path / "gpu-check.md").read_text()
    assert "| step | status | seconds | reason |" in text
    assert all(f"| {name} | " in text for name in STEPS)

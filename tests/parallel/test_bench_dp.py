"""`hpclab bench dp`: the measurement on real process groups gives every row (not timings)."""

import subprocess
import sys

import pytest
import torch

import hpclab.problems  # noqa: F401 - imported once here (scikit-learn), not in every fork
from hpclab.bench.dp import IMPLS, measure_on_rank
from hpclab.cluster.spawn import run_local

pytestmark = [pytest.mark.unit_d, pytest.mark.cluster]

torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)   # warm before forking


def test_measure_on_rank_subgroups():
    """3 processes, a 2-rank sub-group: rank 2 sits out, ranks 0-1 time every wrapper."""
    res = run_local(measure_on_rank, 3, 2, "mlp", 2, 1, timeout=120)
    assert res[2] is None
    for r in res[:2]:
        assert set(IMPLS) <= set(r) and r["params"] > 0
        for impl in IMPLS:
            assert r[impl]["step"] > 0
        assert r["ours-ring"]["comm"] >= 0


@pytest.mark.slow
def test_cli_quick(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hpclab", "bench", "dp", "--quick",
                          "--models", "mlp", "--out", str(tmp_path)],
                         check=False, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    table = (tmp_path / "dp.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| mlp")]
    assert len(rows) == 2 * len(IMPLS)          # engines 1 and 2, each wrapper
    assert "| live stream |" in table
    assert "mlp: ours-auto" in table and "torch DDP's step time on 2 engines" in table
    assert (tmp_path / "dp.png").read_bytes()[:4] == b"\x89PNG"

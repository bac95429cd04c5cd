"""Shared test configuration.

Markers (see pyproject.toml): unit_a..unit_d by course unit; cluster, slow, gpu, browser,
slurm, notebooks by cost. `gpu` tests skip, with the reason, on machines without CUDA.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import torch
    HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    HAS_CUDA = False

# Keep CPU tests from oversubscribing the (2-core) CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; this machine has none "
                                       "(run `make test-gpu` on a GPU node)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip_gpu)


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mpi():
    """mpi4py built against this machine's Open MPI (`.ci/slurm/mpi-deps`), for the tests
    that start engines="mpi"."""
    done = subprocess.run([str(ROOT / ".ci" / "slurm" / "mpi-deps"), sys.executable],
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        pytest.fail(f".ci/slurm/mpi-deps failed:\n{done.stdout}\n{done.stderr}")

"""Shared test configuration.

Markers (see pyproject.toml): unit_a..unit_d by course unit; cluster, slow, gpu, browser,
slurm, notebooks by cost. `gpu` tests skip, with the reason, on machines without CUDA.
"""

import os

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

"""Shared by the exercise tests: grade only the assignments that the selected tests need.

Autograding runs real kernels (seconds per notebook), so the module fixtures grade the
assignments named by the tests that this pytest run selected (`-k b2_adam` grades one),
and every assignment when the whole directory runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def selected(request):
    """selected(argname): the values of parametrize argument `argname` among this run's tests."""
    def values(argname: str) -> set:
        return {item.callspec.params[argname] for item in request.session.items
                if hasattr(item, "callspec") and argname in item.callspec.params}
    return values


@pytest.fixture(scope="session")
def only():
    """only(folder, assignments, tmp): a copy of `folder` holding just those assignments."""
    def copy(folder: Path, assignments: set[str], tmp: Path) -> Path:
        out = tmp / folder.name
        out.mkdir(parents=True)
        for name in sorted(assignments):
            shutil.copytree(folder / name, out / name)
        return out
    return copy
